"""What an electronic signature signs, in one canonical serialisation, and its SHA-256: the
binding of a signature to the signed values (21 CFR 11.70). `app.review.signatures` stores
the hash with each signature and compares it again on the pages."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app.crf.changes import FormRef
from app.models import FormData, ItemData, ItemGroupData, StudyEventData, Subject

_CONTENT = (
    sa_select(
        col(StudyEventData.event_oid), col(StudyEventData.repeat_key),
        col(StudyEventData.visit_date), col(FormData.form_oid), col(FormData.repeat_key),
        col(FormData.definition_version), col(FormData.status), col(FormData.not_done_reason),
        col(ItemGroupData.item_group_oid), col(ItemGroupData.repeat_key), col(ItemData.item_oid),
        col(ItemData.value),
    )
    .select_from(StudyEventData)
    .outerjoin(FormData, col(FormData.study_event_id) == col(StudyEventData.id))
    .outerjoin(ItemGroupData, col(ItemGroupData.form_data_id) == col(FormData.id))
    .outerjoin(ItemData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
)  # fmt: skip


def signed_content(session: Session, subject: Subject, ref: FormRef | None) -> bytes:
    """The canonical serialisation of what a signature of `ref` (None: the casebook) signs.

    It is UTF-8 JSON, keys sorted, no whitespace (`separators=(",", ":")`, non-ASCII kept):

        {"forms": [{"definition_version": "MDV.ZM001.1", "event": "SE.SCR", "event_repeat": 1,
                    "form": "F.IE", "form_repeat": 1,
                    "items": [["IG.IE", 1, "IT.IE.IECAT", "INCLUSION"], ...],
                    "not_done_reason": null, "status": "complete"}, ...],
         "subject": "01-001",
         "visits": [["SE.SCR", 1, "2026-01-10"], ...]}

    `forms` holds the signed form (a form signature) or every stored form of the subject (the
    casebook), sorted by event OID, event repeat, form OID, form repeat; each form's stored
    values are `items`, [item group OID, group repeat, item OID, value] sorted in that order,
    with the MetaDataVersion OID the form is stored under, its status and not-done reason.
    `visits` (the casebook only; [] for a form) are the dated visits: [event OID, repeat, ISO
    date], sorted. Values are the stored canonical text, exactly as ODM carries them."""
    statement = _CONTENT.where(col(StudyEventData.subject_id) == subject.id)
    if ref is not None:
        statement = statement.where(
            col(StudyEventData.event_oid) == ref.event_oid,
            col(StudyEventData.repeat_key) == ref.event_repeat,
            col(FormData.form_oid) == ref.form_oid, col(FormData.repeat_key) == ref.form_repeat,
        )  # fmt: skip
    visits: set[tuple[str, int, str]] = set()
    forms: dict[tuple[str, int, str, int], dict[str, Any]] = {}
    for (
        event_oid, e_repeat, visit_date, form_oid, f_repeat, version, status, reason,
        group_oid, g_repeat, item_oid, value,
    ) in session.execute(statement):  # fmt: skip
        if visit_date is not None and ref is None:
            visits.add((event_oid, e_repeat, visit_date.isoformat()))
        if form_oid is None:
            continue
        form = forms.setdefault(
            (event_oid, e_repeat, form_oid, f_repeat),
            {
                "event": event_oid, "event_repeat": e_repeat, "form": form_oid,
                "form_repeat": f_repeat, "definition_version": version, "status": status,
                "not_done_reason": reason, "items": [],
            },
        )  # fmt: skip
        if item_oid is not None and value is not None:
            form["items"].append([group_oid, g_repeat, item_oid, value])
    for form in forms.values():
        form["items"].sort()
    content = {
        "subject": subject.subject_key,
        "forms": [forms[key] for key in sorted(forms)],
        "visits": [list(visit) for visit in sorted(visits)],
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def content_hash(session: Session, subject: Subject, ref: FormRef | None) -> str:
    """SHA-256 (hex) of `signed_content`."""
    return hashlib.sha256(signed_content(session, subject, ref)).hexdigest()
