"""Studies and their definition versions as data.

A study's definition is read from its folder; the database keeps each released version (its
MetaDataVersion OID `MDV.<study>.<n>`, the digest of its content, the definition itself).
`bind` ties a loaded definition to its study row and released version:
- a study the database does not know yet is added, with version 1;
- the same content as the latest version (a comment or layout change is the same content)
  runs as that version;
- changed content over a study that holds no subjects is released as the next version;
- changed content over a study that holds data is refused (DefinitionChanged) until an
  administrator has seen what changes (`upgrade_preview`) and confirmed it
  (`apply_upgrade`, `trialdesk study upgrade --preview / --apply`), audited.
A stored form keeps the version it was entered under (FormData.definition_version) until it is
saved again; values of items a later version removed stay stored, shown and exported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app import audit
from app.audit import AuditAction
from app.config import Settings
from app.db import unit_of_work
from app.models import (
    FormData,
    ItemData,
    ItemGroupData,
    StudyEventData,
    StudyRecord,
    StudyVersion,
    Subject,
)
from app.study.loader import LOG_EVENT_OID, Study, load_study
from app.study.model import FormDef, ItemDef, ItemGroupDef, Schedule
from app.study.retired import RetiredDefinitions, RetiredForm


@dataclass(frozen=True)
class StudyRegistry:
    """The studies an instance serves, bound to the database, by id and by OID."""

    by_id: dict[int, Study]

    @cached_property
    def by_oid(self) -> dict[str, Study]:
        return {study.info.oid: study for study in self.by_id.values()}

    @classmethod
    def of(cls, studies: list[Study]) -> StudyRegistry:
        return cls({study.id: study for study in studies})


def load_studies(settings: Settings, *, with_mappings: bool = False) -> list[Study]:
    """Load every study folder of the settings, each with its SDTM mapping folder (checked
    against the study `with_mappings`); raises StudyDefinitionError listing every problem of
    the first folder with problems."""
    studies = []
    for folders in settings.studies:
        study = replace(load_study(folders.forms), sdtm_dir=folders.exports)
        if with_mappings and folders.exports is not None:
            from app.sdtm.spec import load_sdtm_specs  # the SDTM layer: only when asked

            load_sdtm_specs(folders.exports, study)
        studies.append(study)
    return studies


def bind_studies(engine: Engine, studies: list[Study], *, now: datetime) -> StudyRegistry:
    """Bind every study (see `bind`) in one transaction. Two server processes starting at
    once may both add a new study: the one that loses the race reads what the other stored."""
    for attempt in (1, 2):
        try:
            with Session(engine, expire_on_commit=False) as session, unit_of_work(session):
                return StudyRegistry.of([bind(session, study, now=now) for study in studies])
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class DefinitionChanged(Exception):
    """The definition folder differs from the released version of a study holding data."""


def bind(session: Session, study: Study, *, now: datetime) -> Study:
    """`study` bound to its database row and released version (see the module docstring);
    writes in the session's transaction (the caller commits)."""
    record = session.exec(select(StudyRecord).where(StudyRecord.oid == study.info.oid)).first()
    if record is None:
        record = StudyRecord(oid=study.info.oid, name=study.info.name, created_at=now)
        session.add(record)
        session.flush()
    latest = latest_version(session, record)
    bound = replace(study, db_id=record.id, retired=retired_definitions(session, record, study))
    if latest is not None and latest.digest == study.digest:
        return replace(bound, version=latest.number)
    if latest is not None and holds_data(session, record):
        raise DefinitionChanged(
            f"The {study.info.oid} definition differs from {latest.oid}, the version its data "
            "were entered under. See what changes with `trialdesk study upgrade --preview`, "
            "then apply it with `trialdesk study upgrade --apply`."
        )
    return _release(session, bound, record, latest, actor=audit.Actor(None, "startup"), now=now)


def latest_version(session: Session, record: StudyRecord) -> StudyVersion | None:
    return session.exec(
        select(StudyVersion)
        .where(StudyVersion.study_id == record.id)
        .order_by(col(StudyVersion.number).desc())
    ).first()


def retired_definitions(session: Session, record: StudyRecord, study: Study) -> RetiredDefinitions:
    """Items, item groups and forms that released versions of the study had and `study`
    lacks, each as the latest version with it defined it; their values stay in the database
    without a place on the current forms. A version with the digest of `study` has its very
    forms, so nothing of it is retired: it is not read (its stored definition is the whole
    study, a tenth of a second to read at every start)."""
    current = {
        item.oid for form in study.forms.values() for g in form.item_groups for item in g.items
    }
    groups = {g.oid for form in study.forms.values() for g in form.item_groups}
    items: dict[str, dict[str, ItemDef]] = {}
    removed_groups: dict[str, dict[str, ItemGroupDef]] = {}
    forms: dict[str, RetiredForm] = {}
    versions = session.exec(
        select(StudyVersion)
        .where(StudyVersion.study_id == record.id, StudyVersion.digest != study.digest)
        .order_by(col(StudyVersion.number))
    )  # fmt: skip
    for version in versions:
        schedule = Schedule.model_validate(version.definition["schedule"])
        for form in stored_forms(version.definition).values():
            if form.oid not in study.forms:
                forms[form.oid] = _retired_form(form, schedule)
                continue
            for group in form.item_groups:
                if group.oid not in groups:
                    removed_groups.setdefault(form.oid, {})[group.oid] = group
                    continue
                for item in group.items:
                    if item.oid not in current:
                        items.setdefault(group.oid, {})[item.oid] = item
    return RetiredDefinitions(
        items={group: tuple(found.values()) for group, found in items.items()},
        groups={form: tuple(found.values()) for form, found in removed_groups.items()},
        forms=forms,
    )


def _retired_form(form: FormDef, schedule: Schedule) -> RetiredForm:
    events = [
        visit.oid for visit in schedule.visits if any(f.form == form.oid for f in visit.forms)
    ]
    logs = [log for log in schedule.log_forms if log.form == form.oid]
    if logs:
        events.append(LOG_EVENT_OID)
    return RetiredForm(form, tuple(events), repeating=any(log.repeating for log in logs))


def holds_data(session: Session, record: StudyRecord) -> bool:
    return session.exec(select(Subject.id).where(Subject.study_id == record.id)).first() is not None


def _release(
    session: Session,
    study: Study,
    record: StudyRecord,
    latest: StudyVersion | None,
    *,
    actor: audit.Actor,
    now: datetime,
) -> Study:
    number = latest.number + 1 if latest else 1
    released = replace(study, version=number)
    version = StudyVersion(
        study_id=study.id, number=number, oid=released.mdv_oid, digest=study.digest,
        definition=study.content, released_at=now,
        released_by_id=actor.user.id if actor.user else None,
    )  # fmt: skip
    session.add(version)
    audit.record(
        session, actor=actor, action=AuditAction.STUDY_RELEASE, study_id=record.id,
        new_value=released.mdv_oid, old_value=latest.oid if latest else None,
        details=f"{study.info.oid} definition sha256:{study.digest}", at=now,
    )  # fmt: skip
    session.flush()
    return released


@dataclass(frozen=True)
class ItemChange:
    """What a new definition does to one item of a form, and to the values stored for it."""

    item_oid: str
    label: str
    change: str
    """added, removed, or what changed (type, code list, range, required)"""
    stored_values: int
    consequence: str


@dataclass(frozen=True)
class FormChange:
    form_oid: str
    title: str
    change: str
    """added, removed, changed"""
    stored_forms: int
    items: tuple[ItemChange, ...]


@dataclass(frozen=True)
class UpgradePreview:
    """What releasing the folder's definition over the latest stored version changes."""

    study_oid: str
    current: str
    """The latest released MetaDataVersion OID (or "none")."""
    proposed: str
    forms: tuple[FormChange, ...]
    schedule_changed: bool
    same: bool
    checks: tuple[str, ...] = ()
    """Edit checks added, removed or changed: "EC045 added" ..."""

    def format(self) -> str:
        """The preview as text, for the command line."""
        if self.same:
            return f"{self.study_oid}: the definition is the same as {self.current}; nothing to do."
        lines = [f"{self.study_oid}: {self.current} -> {self.proposed}"]
        if self.schedule_changed:
            lines.append(
                "  The schedule, the subject path, the signatures or the study's identification "
                "changes."
            )
        if self.checks:
            lines.append(
                f"  Edit checks: {', '.join(self.checks)} (a batch run, `trialdesk checks run`, "
                "reports what stored data they find)."
            )
        for form in self.forms:
            stored = f"{form.stored_forms} stored" if form.stored_forms else "none stored"
            lines.append(f"  {form.form_oid} {form.title}: {form.change} ({stored})")
            for item in form.items:
                values = f"{item.stored_values} stored value(s)"
                lines.append(
                    f"    {item.item_oid} {item.label}: {item.change}; {values}: {item.consequence}"
                )
        if not self.forms and not self.schedule_changed and not self.checks:
            lines.append("  Only code lists or units change.")
        lines.append(
            "Stored forms keep the version they were entered under until they are saved again; "
            "no stored value is changed or deleted."
        )
        return "\n".join(lines)


def upgrade_preview(session: Session, study: Study) -> UpgradePreview:
    """Compare the folder's definition with the latest released version of the study."""
    record = session.exec(select(StudyRecord).where(StudyRecord.oid == study.info.oid)).first()
    latest = latest_version(session, record) if record else None
    current = "none" if latest is None else latest.oid
    proposed = f"MDV.{study.info.oid}.{latest.number + 1 if latest else 1}"
    if latest is None or record is None:
        return UpgradePreview(study.info.oid, current, proposed, (), False, latest is not None)
    if latest.digest == study.digest:
        return UpgradePreview(study.info.oid, current, current, (), False, True)
    old = stored_forms(latest.definition)
    forms = tuple(
        change
        for oid in sorted(set(old) | set(study.forms))
        if (change := _form_change(session, record, old.get(oid), study.forms.get(oid)))
    )
    outside_forms = ("info", "schedule", "subject_path", "signatures")
    schedule_changed = any(
        latest.definition.get(key) != study.content.get(key) for key in outside_forms
    )
    checks = _check_changes(latest.definition.get("checks", []), study.content.get("checks", []))
    return UpgradePreview(study.info.oid, current, proposed, forms, schedule_changed, False, checks)


def _check_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> tuple[str, ...]:
    before = {check["id"]: check for check in old}
    after = {check["id"]: check for check in new}
    changes = []
    for check_id in sorted(before.keys() | after.keys()):
        if check_id not in before:
            changes.append(f"{check_id} added")
        elif check_id not in after:
            changes.append(f"{check_id} removed")
        elif before[check_id] != after[check_id]:
            changes.append(f"{check_id} changed")
    return tuple(changes)


def apply_upgrade(session: Session, study: Study, *, actor: audit.Actor, now: datetime) -> Study:
    """Release the folder's definition as the study's next version (audited); the caller
    commits. The same content as the latest version releases nothing."""
    record = session.exec(select(StudyRecord).where(StudyRecord.oid == study.info.oid)).first()
    if record is None:
        return bind(session, study, now=now)
    latest = latest_version(session, record)
    bound = replace(study, db_id=record.id, retired=retired_definitions(session, record, study))
    if latest is not None and latest.digest == study.digest:
        return replace(bound, version=latest.number)
    return _release(session, bound, record, latest, actor=actor, now=now)


def stored_forms(definition: dict[str, object]) -> dict[str, FormDef]:
    """The forms of a stored definition, by OID."""
    forms = definition.get("forms", [])
    assert isinstance(forms, list)
    return {form.oid: form for form in (FormDef.model_validate(data) for data in forms)}


def item_definitions(session: Session, mdv_oid: str) -> dict[str, ItemDef]:
    """Every item of a released version, by OID (for values of items a later one removed)."""
    version = session.exec(select(StudyVersion).where(StudyVersion.oid == mdv_oid)).first()
    if version is None:
        return {}
    return {
        item.oid: item
        for form in stored_forms(version.definition).values()
        for group in form.item_groups
        for item in group.items
    }


def _form_change(
    session: Session, record: StudyRecord, old: FormDef | None, new: FormDef | None
) -> FormChange | None:
    form = new or old
    assert form is not None
    if old is not None and new is not None and old == new:
        return None
    stored = session.exec(
        select(func.count(col(FormData.id)))
        .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
        .join(Subject, col(Subject.id) == StudyEventData.subject_id)
        .where(Subject.study_id == record.id, FormData.form_oid == form.oid)
    ).one()
    if old is None or new is None:
        kept = "removed from the definition: stored forms are kept and shown on the casebook"
        change = "added" if old is None else kept
        return FormChange(form.oid, form.title, change, stored, ())
    old_items = {item.oid: item for group in old.item_groups for item in group.items}
    new_items = {item.oid: item for group in new.item_groups for item in group.items}
    items = tuple(
        item_change
        for oid in sorted(set(old_items) | set(new_items))
        if (item_change := _item_change(session, record, old_items.get(oid), new_items.get(oid)))
    )
    return FormChange(form.oid, form.title, "changed", stored, items)


_COMPARED = ("type", "codelist", "units", "hard_range", "soft_range", "required", "length",
             "decimals", "show_if", "derivation")  # fmt: skip


def _item_change(
    session: Session, record: StudyRecord, old: ItemDef | None, new: ItemDef | None
) -> ItemChange | None:
    item = new or old
    assert item is not None
    if old is not None and new is not None:
        changed = [name for name in _COMPARED if getattr(old, name) != getattr(new, name)]
        if not changed and old.label == new.label:
            return None
        what = ", ".join(changed) or "label"
    else:
        what = "added" if old is None else "removed"
    values = session.exec(
        select(func.count(col(ItemData.id)))
        .join(ItemGroupData, col(ItemGroupData.id) == ItemData.item_group_data_id)
        .join(FormData, col(FormData.id) == ItemGroupData.form_data_id)
        .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
        .join(Subject, col(Subject.id) == StudyEventData.subject_id)
        .where(Subject.study_id == record.id, ItemData.item_oid == item.oid)
    ).one()
    if old is None:
        consequence = "new question, empty in stored forms"
    elif new is None:
        consequence = "kept as entered, shown as not in the current definition, and exported"
    elif new.is_derived:
        consequence = "kept; recalculated when its form is next saved"
    else:
        consequence = "kept as entered; checked against the new definition when next saved"
    return ItemChange(item.oid, item.label, what, values, consequence)
