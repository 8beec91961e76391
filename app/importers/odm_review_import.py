"""Queries and freezes or locks read back from the Annotations TrialDesk's ODM exports write
(`app.exporters.odm_review` describes them), and restored through the write path.

- `notes` reads the query and lock Annotations of a SubjectData (a snapshot's one, or each
  of a transactional file's); `restore` turns a subject's notes into changes and applies
  them after its values (the import's hook): first the queries (`ImportedQuery`: the file's
  state, texts, opening and history), then the locks (`DataLockSet` with who set it and
  when in the source), most specific first, since a lock refuses every later write.
- A query is one per "query" number in the file: a snapshot gives its state, a
  transactional file each transition in order (the last is its state).
- A lock is one per "lock" number: a snapshot flags each form with the lock in force on it,
  so the lock is restored once at the place it covers ("on"); in a transactional file a lock
  whose last element is a "Remove" was released there and is not restored. A study-wide lock
  is not restored (it belongs to no subject; the manifest states it): a warning says so.
- Importing the same annotations again changes nothing: queries are matched
  (`app.review.query_import`), and a lock already in force at the place is skipped.
Annotations of other systems (no JSON Comment with "query" or "lock") are not read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree
from sqlmodel import Session

from app.crf import write
from app.crf.changes import (
    Change,
    DataLockSet,
    ImportedQuery,
    ImportedTransition,
    NotFound,
    QueryTarget,
    Refused,
)
from app.exporters.odm_common import q
from app.exporters.odm_metadata import LOCK_STATE_CODELIST, QUERY_STATE_CODELIST
from app.models import LockLevel, Subject, pk
from app.review.locks import LockPlace, active_locks, covers
from app.review.query_import import already_restored

Report = Callable[[int | None, str, str], None]
"""Told (line, path, message) of a problem or warning."""

_PLACE_ORDER = {"form": 0, "visit": 1, "casebook": 2}


@dataclass(frozen=True)
class Note:
    """One query or lock Annotation: its flag, its JSON Comment, where it sits and how."""

    codelist: str
    value: str
    fields: dict[str, Any]
    target: QueryTarget | None
    """The visit, form or item it sits on; None on the SubjectData."""
    transaction: str | None
    line: int | None
    path: str


def notes(subject_el: etree._Element, path: str) -> list[Note]:
    """The query and lock Annotations of a SubjectData and of everything in it, in order."""
    found = _annotation_notes(subject_el, None, path)
    for event_el in subject_el.iterchildren(q("StudyEventData")):
        event = (event_el.get("StudyEventOID", ""), _repeat(event_el, "StudyEventRepeatKey"))
        event_path = f"{path}/{event[0]}"
        found += _annotation_notes(event_el, QueryTarget(*event), event_path)
        for form_el in event_el.iterchildren(q("FormData")):
            form = (form_el.get("FormOID", ""), _repeat(form_el, "FormRepeatKey"))
            form_path = f"{event_path}/{form[0]}"
            found += _annotation_notes(form_el, QueryTarget(*event, *form), form_path)
            for group_el in form_el.iterchildren(q("ItemGroupData")):
                group = (group_el.get("ItemGroupOID", ""), _repeat(group_el, "ItemGroupRepeatKey"))
                for item_el in group_el.iterchildren(q("ItemData")):
                    item = item_el.get("ItemOID", "")
                    target = QueryTarget(*event, *form, *group, item)
                    item_path = f"{form_path}/{group[0]}/{item}"
                    found += _annotation_notes(item_el, target, item_path)
    return found


@dataclass
class Restored:
    """How many queries were restored (or moved to the file's state) and locks set."""

    queries: int = 0
    locks: int = 0


def restore(
    session: Session,
    subject: Subject,
    found: Iterable[Note],
    apply: Callable[[Change], write.Outcome],
    problem: Report,
    warning: Report,
) -> Restored:
    """Apply the queries, then the locks, that `found` (the subject's notes) carry."""
    found = list(found)
    restored = Restored()
    for note, change in _query_changes(pk(subject), found):
        if not already_restored(session, subject, change):
            restored.queries += _apply(apply, change, note, problem)
    locks = sorted(_lock_notes(found), key=lambda note: _PLACE_ORDER.get(note.fields["on"], 3))
    for note in locks:
        if note.fields["on"] == "study":
            warning(note.line, note.path, "a study-wide lock is not restored by an import")
            continue
        lock_change = _lock_change(pk(subject), note)
        place = LockPlace(
            lock_change.event_oid,
            lock_change.event_repeat,
            lock_change.form_oid,
            lock_change.form_repeat,
        )
        in_force = active_locks(session, subject)
        if any(
            covers(lock, place) and lock.level in (LockLevel.LOCK, lock_change.level)
            for lock in in_force
        ):
            continue  # already set (an import of the same file, or a stronger lock covers it)
        restored.locks += _apply(apply, lock_change, note, problem)
    return restored


def _apply(
    apply: Callable[[Change], write.Outcome], change: Change, note: Note, problem: Report
) -> int:
    """1 when the write path made `change`, 0 (and a problem) when it refused it."""
    try:
        apply(change)
    except (Refused, NotFound) as refusal:
        what = "query" if note.codelist == QUERY_STATE_CODELIST else "lock"
        problem(note.line, note.path, f"{what}: {refusal}")
        return 0
    return 1


def _query_changes(subject_id: int, found: list[Note]) -> list[tuple[Note, ImportedQuery]]:
    """One ImportedQuery per query number, with its transitions in the file's order."""
    by_number: dict[Any, list[Note]] = {}
    for note in found:
        if note.codelist == QUERY_STATE_CODELIST and note.target is not None:
            by_number.setdefault(note.fields.get("query"), []).append(note)
    changes = []
    for steps in by_number.values():
        last = steps[-1]
        fields = last.fields
        assert last.target is not None
        history = tuple(
            ImportedTransition(
                step.fields.get("from"), step.value, step.fields.get("step"),
                step.fields.get("by"), _moment(step.fields.get("at")),
            )
            for step in steps
            if "step" in step.fields
        )  # fmt: skip
        change = ImportedQuery(
            subject_id, last.target, last.value, str(fields.get("text") or ""),
            fields.get("response"), fields.get("check"), _moment(fields.get("opened_at")),
            fields.get("opened_by"), bool(fields.get("require_response")),
            bool(fields.get("require_manual_close")), history,
        )  # fmt: skip
        changes.append((steps[0], change))
    return changes


def _lock_notes(found: list[Note]) -> list[Note]:
    """The last note of each lock number that was not released in the file."""
    last: dict[Any, Note] = {}
    for note in found:
        if note.codelist == LOCK_STATE_CODELIST:
            last[note.fields.get("lock")] = note
    return [note for note in last.values() if note.transaction != "Remove"]


def _lock_change(subject_id: int, note: Note) -> DataLockSet:
    target = note.target or QueryTarget("")
    on = note.fields["on"]
    event = (target.event_oid, target.event_repeat) if on in ("visit", "form") else (None, None)
    form = (target.form_oid, target.form_repeat) if on == "form" else (None, None)
    return DataLockSet(
        subject_id, note.value, note.fields.get("reason"), event[0], event[1], form[0], form[1],
        set_by_name=note.fields.get("by"), set_at=_moment(note.fields.get("at")),
    )  # fmt: skip


def _annotation_notes(element: etree._Element, target: QueryTarget | None, path: str) -> list[Note]:
    found = []
    for annotation in element.iterchildren(q("Annotation")):
        fields = _fields(annotation.findtext(q("Comment")))
        for value in annotation.iterfind(f"{q('Flag')}/{q('FlagValue')}"):
            codelist = value.get("CodeListOID")
            key = {QUERY_STATE_CODELIST: "query", LOCK_STATE_CODELIST: "lock"}.get(codelist or "")
            if key is None or fields is None or key not in fields:
                continue
            if key == "lock" and fields.get("on") not in (*_PLACE_ORDER, "study"):
                continue
            line = value.sourceline if isinstance(value.sourceline, int) else None
            found.append(
                Note(
                    codelist or "", (value.text or "").strip(), fields, target,
                    annotation.get("TransactionType"), line, path,
                )
            )  # fmt: skip
    return found


def _fields(comment: str | None) -> dict[str, Any] | None:
    """The JSON object of a TrialDesk query or lock Comment; None for any other Comment."""
    if not comment or not comment.lstrip().startswith("{"):
        return None
    try:
        fields = json.loads(comment)
    except json.JSONDecodeError:
        return None
    return fields if isinstance(fields, dict) else None


def _repeat(element: etree._Element, attribute: str) -> int:
    text = element.get(attribute, "1")
    return int(text) if text.isdigit() else 1


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
