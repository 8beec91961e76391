"""Queries and freezes or locks in the ODM 1.3.2 exports, as Annotations (the convention of
`odm_common`: a coded Flag, the rest in the Comment), and the study's lock status for the
export's manifest.

- A query is an Annotation of the ItemData, FormData or StudyEventData it is about: a Flag
  with its state (CL.QUERYSTATE) and a Comment holding a JSON object with the key "query"
  (the query's number here), "check" (a system query's check, else null), "text" (the
  question), "response" (the site's last answer), "opened_at", "opened_by" (login name),
  "require_response" and "require_manual_close". JSON, because a question or answer may hold
  any text and the import reads it back exactly; ODM 1.3.2 has no element for a query.
- In the snapshot, each query once, in its current state. In the transactional export,
  each transition of a query is an element of its own (TransactionType "Context" down to the
  query's place) with an AuditRecord (who, where, when, the transition's text as
  ReasonForChange, through what) and the Annotation: TransactionType "Insert" for the
  opening, "Update" for every move; the Flag is the state reached; the Comment adds "from"
  (the state left), "step" (the transition's text), "by" and "at".
- A freeze or lock is a Flag of CL.LOCKSTATE. In the snapshot, each FormData carries the
  strongest one in force on it (its lock status), and a casebook's or visit's lock is on its
  SubjectData or StudyEventData as well; the Comment's JSON names the lock ("lock",
  "on": "study", "casebook", "visit" or "form", "by", "at", "reason"), so that an import
  restores each lock once, at the place it covers. In the transactional export, each
  setting ("Insert") and release ("Remove", the release reason as ReasonForChange) is an
  element at the lock's place: the SubjectData for a casebook, the StudyEventData for a
  visit, the FormData for a form.
A study-wide lock belongs to no subject: the export's manifest states it (`lock_status`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from lxml import etree
from sqlalchemy import Select, bindparam, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.audit import AuditAction
from app.exporters.odm_common import (
    AUDIT_COLUMNS,
    ODM_NSMAP,
    AuditRow,
    RepeatKeys,
    Sites,
    annotate,
    as_utc,
    audit_element,
    q,
)
from app.exporters.odm_metadata import LOCK_STATE_CODELIST, QUERY_STATE_CODELIST
from app.models import (
    AuditRecord,
    DataLock,
    FormData,
    LockLevel,
    Query,
    StudyEventData,
    Subject,
    UserAccount,
)
from app.review.locks import LockPlace, strongest
from app.review.query_reads import QUERY_ACTIONS

LOCK_ACTIONS = (AuditAction.DATA_FREEZE, AuditAction.DATA_LOCK, AuditAction.DATA_RELEASE)
_NUMBERED = re.compile(r"^(query|lock) (\d+)")


def _moment(moment: datetime) -> str:
    return as_utc(moment).isoformat()


def _comment(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


def _query_fields(session: Session, query: Query) -> dict[str, Any]:
    opener = session.get(UserAccount, query.opened_by_id) if query.opened_by_id else None
    return {
        "query": query.id, "check": query.check_id, "text": query.text,
        "response": query.response, "opened_at": _moment(query.opened_at),
        "opened_by": opener.username if opener else None,
        "require_response": query.require_response,
        "require_manual_close": query.require_manual_close,
    }  # fmt: skip


def lock_place_name(lock: DataLock) -> str:
    """What a lock covers: "study", "casebook", "visit" or "form"."""
    if lock.subject_id is None:
        return "study"
    return "casebook" if lock.event_oid is None else "visit" if lock.form_oid is None else "form"


def _lock_fields(lock: DataLock) -> dict[str, Any]:
    return {
        "lock": lock.id, "on": lock_place_name(lock), "by": lock.set_by_name,
        "at": _moment(lock.set_at), "reason": lock.reason,
    }  # fmt: skip


# -- the snapshot -----------------------------------------------------------------------------


def query_annotation(session: Session, element: etree._Element, query: Query) -> None:
    """The query on `element` in its current state (CL.QUERYSTATE), its texts as Comment."""
    annotate(
        element, [(QUERY_STATE_CODELIST, query.state)], _comment(_query_fields(session, query))
    )


def lock_annotation(element: etree._Element, lock: DataLock) -> None:
    """The freeze or lock in force on a form (CL.LOCKSTATE), with who set it, when and why."""
    annotate(element, [(LOCK_STATE_CODELIST, lock.level)], _comment(_lock_fields(lock)))


def placed_at(
    locks: list[DataLock], event_oid: str | None = None, event_repeat: int | None = None
) -> list[DataLock]:
    """The subject's locks on exactly its casebook (no event given) or that visit: the
    snapshot annotates them there too, so that a casebook or visit with no stored form
    still carries its lock."""
    return [
        lock for lock in locks
        if lock.subject_id is not None and lock.form_oid is None
        and (lock.event_oid, lock.event_repeat) == (event_oid, event_repeat)
    ]  # fmt: skip


# -- the transactional export -----------------------------------------------------------------


def review_history_statement(changed_since: datetime | None) -> Select[Any]:
    """A subject's query and lock transitions (the subject bound as `subject_id`), in
    recorded order: the audit columns, then `details` and the user name."""
    statement = (
        sa_select(*AUDIT_COLUMNS, col(AuditRecord.details), col(AuditRecord.username))
        .where(
            col(AuditRecord.subject_id) == bindparam("subject_id"),
            col(AuditRecord.action).in_([*QUERY_ACTIONS, *LOCK_ACTIONS]),
        )
        .order_by(col(AuditRecord.id))
    )
    if changed_since is not None:
        statement = statement.where(col(AuditRecord.occurred_at) > changed_since)
    return statement


def write_review_history(
    xf: etree._IncrementalFileWriter,
    session: Session,
    statement: Select[Any],
    subject: Subject,
    repeats: RepeatKeys,
    sites: Sites,
) -> int:
    """Write the subject's query and lock transitions, one SubjectData each; returns how many."""
    queries = {
        query.id: query
        for query in session.exec(select(Query).where(Query.subject_id == subject.id))
    }
    locks = {
        lock.id: lock
        for lock in session.exec(select(DataLock).where(DataLock.subject_id == subject.id))
    }
    written = 0
    for row in session.connection().execute(statement, {"subject_id": subject.id}):
        audit = AuditRow(*row[: len(AUDIT_COLUMNS)])
        details, username = row[len(AUDIT_COLUMNS) :]
        numbered = _NUMBERED.match(details or "")
        if numbered is None:
            continue
        kind, number = numbered.group(1), int(numbered.group(2))
        element = etree.Element(
            q("SubjectData"), SubjectKey=subject.subject_key, TransactionType="Context",
            nsmap=ODM_NSMAP,
        )  # fmt: skip
        moment = {"by": username, "at": _moment(audit.occurred_at)}
        if kind == "query" and number in queries:
            query = queries[number]
            place = context_place(element, repeats, query.event_oid, query.event_repeat, query.form_oid,
                           query.form_repeat, query.item_group_oid, query.group_repeat,
                           query.item_oid)  # fmt: skip
            place.append(audit_element(audit, sites))
            fields = {**_query_fields(session, query), **moment, "from": audit.old_value,
                      "step": audit.reason}  # fmt: skip
            annotation = annotate(place, [(QUERY_STATE_CODELIST, audit.value)], _comment(fields))
            opening = audit.action == AuditAction.QUERY_OPEN
            annotation.set("TransactionType", "Insert" if opening else "Update")
        elif kind == "lock" and number in locks:
            lock = locks[number]
            place = context_place(element, repeats, lock.event_oid, lock.event_repeat, lock.form_oid,
                           lock.form_repeat)  # fmt: skip
            place.append(audit_element(audit, sites))
            released = audit.action == AuditAction.DATA_RELEASE
            flags = [(LOCK_STATE_CODELIST, lock.level)]
            annotation = annotate(place, flags, _comment(_lock_fields(lock)))
            annotation.set("TransactionType", "Remove" if released else "Insert")
        else:
            continue
        xf.write(element)
        written += 1
    return written


def context_place(
    subject_el: etree._Element, repeats: RepeatKeys, event_oid: str | None,
    event_repeat: int | None, form_oid: str | None = None, form_repeat: int | None = None,
    group_oid: str | None = None, group_repeat: int | None = None, item_oid: str | None = None,
) -> etree._Element:  # fmt: skip
    """The element of a query's, lock's or signature's place under `subject_el`, Context
    containers down to it (the SubjectData itself for a casebook)."""
    if event_oid is None or event_repeat is None:
        return subject_el
    element = repeats.event(subject_el, event_oid, event_repeat)
    element.set("TransactionType", "Context")
    if form_oid is None or form_repeat is None:
        return element
    element = repeats.form(element, event_oid, form_oid, form_repeat)
    element.set("TransactionType", "Context")
    if group_oid is None or group_repeat is None or item_oid is None:
        return element
    element = repeats.group(element, form_oid, group_oid, group_repeat)
    element.set("TransactionType", "Context")
    return etree.SubElement(element, q("ItemData"), ItemOID=item_oid, TransactionType="Context")


# -- the manifest -----------------------------------------------------------------------------


def lock_status(session: Session, study_id: int) -> dict[str, Any]:
    """The study's freeze or lock state for an export's manifest: the study-wide lock in
    force ("study": null when none; a lock outranks a freeze), and how many stored forms are
    frozen and locked (by any freeze or lock covering them)."""
    active = list(
        session.exec(
            select(DataLock).where(
                DataLock.study_id == study_id, col(DataLock.released_at).is_(None)
            )
        )
    )
    study_wide = strongest([lock for lock in active if lock.subject_id is None], LockPlace())
    forms = {LockLevel.FREEZE.value: 0, LockLevel.LOCK.value: 0}
    if study_wide is not None:
        total = session.exec(
            select(func.count(col(FormData.id))).join(StudyEventData).join(Subject)
            .where(Subject.study_id == study_id)
        ).one()  # fmt: skip
        forms[study_wide.level] = total
    elif active:
        by_subject: dict[int, list[DataLock]] = {}
        for lock in active:
            assert lock.subject_id is not None
            by_subject.setdefault(lock.subject_id, []).append(lock)
        rows = session.execute(
            sa_select(col(StudyEventData.subject_id), col(StudyEventData.event_oid),
                   col(StudyEventData.repeat_key), col(FormData.form_oid), col(FormData.repeat_key))
            .join(FormData, col(FormData.study_event_id) == col(StudyEventData.id))
            .where(col(StudyEventData.subject_id).in_(list(by_subject)))
        )  # fmt: skip
        for subject_id, event_oid, event_repeat, form_oid, form_repeat in rows:
            place = LockPlace(event_oid, event_repeat, form_oid, form_repeat)
            covering = strongest(by_subject[subject_id], place)
            if covering is not None:
                forms[covering.level] += 1
    study = None
    if study_wide is not None:
        study = {**_lock_fields(study_wide), "level": study_wide.level}
    return {"study": study, "forms": forms}
