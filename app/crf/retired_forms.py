"""Stored values of forms and item groups that the running definition no longer has.

A later definition version may remove a whole form or item group; what sites entered in it
stays stored (`trialdesk study upgrade --preview` says so) and the casebook shows it, read
only, with the version it was entered under. Values of items removed from a group that the
definition still has are shown on their form instead (`Study.retired`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from app.models import FormData, ItemData, ItemGroupData, StudyEventData, Subject
from app.study.loader import Study


@dataclass(frozen=True)
class RetiredValue:
    """One stored value of a form or item group not in the running definition."""

    visit: str
    """The visit's name in the schedule, or its StudyEvent OID when the schedule has none."""
    event_repeat: int
    form_oid: str
    form_repeat: int
    group_oid: str
    group_repeat: int
    item_oid: str
    value: str | None
    definition_version: str
    """The MetaDataVersion OID the form was last saved under."""


def retired_values(session: Session, study: Study, subject: Subject) -> list[RetiredValue]:
    """The subject's stored values of forms and item groups that `study` no longer defines,
    in visit, form, group, row and item order (a read: nothing is written)."""
    statement = (  # SQLAlchemy's select: sqlmodel's takes at most four columns
        select(
            col(StudyEventData.event_oid), col(StudyEventData.repeat_key),
            col(FormData.form_oid), col(FormData.repeat_key), col(FormData.definition_version),
            col(ItemGroupData.item_group_oid), col(ItemGroupData.repeat_key),
            col(ItemData.item_oid), col(ItemData.value),
        )
        .join(FormData, col(FormData.study_event_id) == StudyEventData.id)
        .join(ItemGroupData, col(ItemGroupData.form_data_id) == FormData.id)
        .join(ItemData, col(ItemData.item_group_data_id) == ItemGroupData.id)
        .where(col(StudyEventData.subject_id) == subject.id)
    )  # fmt: skip
    found = []
    for (
        event,
        event_repeat,
        form_oid,
        form_repeat,
        version,
        group,
        row,
        item,
        value,
    ) in session.execute(statement):
        form = study.forms.get(form_oid)
        if form is not None and any(g.oid == group for g in form.item_groups):
            continue
        visit = study.visit(event)
        name = visit.name if visit is not None else event
        found.append(
            RetiredValue(
                name, event_repeat, form_oid, form_repeat, group, row, item, value, version
            )
        )
    return sorted(
        found,
        key=lambda v: (v.visit, v.event_repeat, v.form_oid, v.form_repeat, v.group_oid,
                       v.group_repeat, v.item_oid),
    )  # fmt: skip
