"""ODM 1.3.2 snapshot export: study metadata, AdminData and every subject's ClinicalData,
each item with its latest AuditRecord.

Streamed: the document is written with lxml's incremental `xmlfile` while subjects are read
one at a time, so memory stays bounded by the largest subject, not by the study.
Form status travels as an Annotation Flag on FormData, coded with CL.FORMSTATUS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lxml import etree
from sqlmodel import Session, col, select

from app.exporters.odm_metadata import metadata_version_oid, study_element
from app.models import (
    AuditRecord,
    FormData,
    ItemData,
    ItemGroupData,
    Site,
    StudyEventData,
    Subject,
    UserAccount,
    utcnow,
)
from app.study.loader import LOG_EVENT_OID, Study

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
SYSTEM_USER_OID = "USR.SYSTEM"
FORM_STATUS_CODELIST = "CL.FORMSTATUS"


def q(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


@dataclass
class ExportCounts:
    subjects: int = 0
    items: int = 0


def user_oid(user_id: int | None) -> str:
    return SYSTEM_USER_OID if user_id is None else f"USR.{user_id}"


def write_odm_snapshot(session: Session, study: Study, path: Path) -> ExportCounts:
    """Write the whole study as one ODM 1.3.2 Snapshot file; returns what was written."""
    counts = ExportCounts()
    created = utcnow()
    with etree.xmlfile(str(path), encoding="UTF-8") as xf:
        xf.write_declaration()
        attributes = {
            "FileType": "Snapshot",
            "FileOID": f"TRIALDESK.{study.info.oid}.{created:%Y%m%dT%H%M%S}",
            "CreationDateTime": created.isoformat(timespec="seconds"),
            "ODMVersion": "1.3.2",
            "Originator": "TrialDesk",
        }
        with xf.element(q("ODM"), attributes, nsmap={None: ODM_NS}):
            xf.write(study_element(study))
            xf.write(admin_data(session, study))
            mdv = metadata_version_oid(study)
            with xf.element(q("ClinicalData"), StudyOID=study.info.oid, MetaDataVersionOID=mdv):
                sites = {site.id: site.oid for site in session.exec(select(Site))}
                for subject in _subjects(session):
                    element, items = subject_element(session, study, subject, sites)
                    xf.write(element)
                    counts.subjects += 1
                    counts.items += items
    return counts


def _subjects(session: Session) -> Iterator[Subject]:
    ids = list(session.exec(select(Subject.id).order_by(col(Subject.subject_key))))
    for subject_id in ids:
        subject = session.get(Subject, subject_id)
        if subject is not None:
            yield subject
            session.expunge(subject)


def admin_data(session: Session, study: Study) -> etree._Element:
    """Users (including the system user of automatic changes) and sites as Locations."""
    admin = etree.Element(q("AdminData"), StudyOID=study.info.oid)
    system = etree.SubElement(admin, q("User"), OID=SYSTEM_USER_OID)
    etree.SubElement(system, q("FullName")).text = "TrialDesk (system)"
    for user in session.exec(select(UserAccount).order_by(col(UserAccount.id))):
        element = etree.SubElement(admin, q("User"), OID=user_oid(user.id))
        etree.SubElement(element, q("LoginName")).text = user.username
        etree.SubElement(element, q("FullName")).text = user.full_name
    mdv = metadata_version_oid(study)
    for site in session.exec(select(Site).order_by(col(Site.number))):
        location = etree.SubElement(
            admin, q("Location"), OID=site.oid, Name=site.name, LocationType="Site"
        )
        etree.SubElement(
            location,
            q("MetaDataVersionRef"),
            StudyOID=study.info.oid,
            MetaDataVersionOID=mdv,
            EffectiveDate=site.created_at.date().isoformat(),
        )
    return admin


AuditKey = tuple[str, int, str, int, str, int, str]


def subject_element(
    session: Session, study: Study, subject: Subject, sites: dict[int | None, str]
) -> tuple[etree._Element, int]:
    """The SubjectData element of one subject and the number of ItemData in it."""
    latest = _latest_audit(session, subject)
    element = etree.Element(q("SubjectData"), SubjectKey=subject.subject_key)
    etree.SubElement(element, q("SiteRef"), LocationOID=sites[subject.site_id])
    items = 0
    rows = session.exec(
        select(StudyEventData, FormData, ItemGroupData, ItemData)
        .join(FormData, col(FormData.study_event_id) == StudyEventData.id)
        .join(ItemGroupData, col(ItemGroupData.form_data_id) == FormData.id)
        .join(ItemData, col(ItemData.item_group_data_id) == ItemGroupData.id)
        .where(StudyEventData.subject_id == subject.id)
        .order_by(
            col(StudyEventData.id),
            col(FormData.id),
            col(ItemGroupData.item_group_oid),
            col(ItemGroupData.repeat_key),
            col(ItemData.id),
        )
    )
    # Every row's parents are written before it: the first row differs from these None keys.
    event_el = form_el = group_el = element
    keys: tuple[int | None, int | None, int | None] = (None, None, None)
    for event, form, group, item in rows:
        if keys[0] != event.id:
            event_el = etree.SubElement(element, q("StudyEventData"), StudyEventOID=event.event_oid)
            if _event_repeats(study, event.event_oid):
                event_el.set("StudyEventRepeatKey", str(event.repeat_key))
        if keys[1] != form.id:
            form_el = etree.SubElement(event_el, q("FormData"), FormOID=form.form_oid)
            if study.is_repeating_form(event.event_oid, form.form_oid):
                form_el.set("FormRepeatKey", str(form.repeat_key))
            _form_status(form_el, form.status)
        if keys[2] != group.id:
            group_el = etree.SubElement(
                form_el, q("ItemGroupData"), ItemGroupOID=group.item_group_oid
            )
            if _group_repeats(study, form.form_oid, group.item_group_oid):
                group_el.set("ItemGroupRepeatKey", str(group.repeat_key))
        keys = (event.id, form.id, group.id)
        if item.value is None:
            continue
        item_el = etree.SubElement(group_el, q("ItemData"), ItemOID=item.item_oid, Value=item.value)
        key = (
            event.event_oid,
            event.repeat_key,
            form.form_oid,
            form.repeat_key,
            group.item_group_oid,
            group.repeat_key,
            item.item_oid,
        )
        if key in latest:
            item_el.append(audit_element(latest[key], sites))
        items += 1
    return element, items


def _form_status(form_el: etree._Element, status: str) -> None:
    annotation = etree.SubElement(form_el, q("Annotation"), SeqNum="1")
    flag = etree.SubElement(annotation, q("Flag"))
    etree.SubElement(flag, q("FlagValue"), CodeListOID=FORM_STATUS_CODELIST).text = status


def _event_repeats(study: Study, event_oid: str) -> bool:
    visit = study.visit(event_oid)
    return visit is not None and visit.repeating and event_oid != LOG_EVENT_OID


def _group_repeats(study: Study, form_oid: str, group_oid: str) -> bool:
    form = study.forms.get(form_oid)
    return form is not None and any(g.oid == group_oid and g.repeating for g in form.item_groups)


def _latest_audit(session: Session, subject: Subject) -> dict[AuditKey, AuditRecord]:
    latest: dict[AuditKey, AuditRecord] = {}
    records = session.exec(
        select(AuditRecord)
        .where(AuditRecord.subject_id == subject.id, col(AuditRecord.item_oid).is_not(None))
        .order_by(col(AuditRecord.id))
    )
    for record in records:
        key = (
            record.event_oid or "",
            record.event_repeat or 0,
            record.form_oid or "",
            record.form_repeat or 0,
            record.item_group_oid or "",
            record.group_repeat or 0,
            record.item_oid or "",
        )
        latest[key] = record
    return latest


def audit_element(record: AuditRecord, sites: dict[int | None, str]) -> etree._Element:
    """An ODM AuditRecord: who (UserRef), where (LocationRef), when, why, through what."""
    element = etree.Element(q("AuditRecord"))
    etree.SubElement(element, q("UserRef"), UserOID=user_oid(record.user_id))
    etree.SubElement(element, q("LocationRef"), LocationOID=sites[record.site_id])
    etree.SubElement(element, q("DateTimeStamp")).text = _timestamp(record.occurred_at)
    if record.reason:
        etree.SubElement(element, q("ReasonForChange")).text = record.reason
    etree.SubElement(element, q("SourceID")).text = record.source
    return element


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
