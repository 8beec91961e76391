"""What the ODM 1.3.2 snapshot and transactional exports share: the document frame (Study,
AdminData, ClinicalData), AuditRecords from plain audit rows, the ClinicalData containers with
their repeat keys, and one small function per kind of Annotation.

Annotations follow one rule, so that a reader needs no extension schema: each Annotation holds
Flags whose FlagValue comes from a code list of the MetaDataVersion (CL.FORMSTATUS,
CL.SUBJECTSTATUS, CL.DOSELEVEL, CL.PHASE, CL.VISITSTATUS) and whose FlagType, from
CL.FLAGTYPE, names that list; its Comment, when present, holds the date or the reason that
goes with the flag (a status's effective date, a visit's date, why a form was not done).
Queries and locks are `odm_review`'s. A new kind of annotation (a source data verification
flag) is one more function and one more code list in `odm_metadata.flag_codelists`; Signatures
(`odm_signatures`) go between AuditRecord and Annotation, which every writer orders that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from lxml import etree
from sqlalchemy import ColumnElement, DateTime, type_coerce
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from app.exporters.odm_metadata import (
    DOSE_LEVEL_CODELIST,
    FLAG_TYPE_CODELIST,
    FORM_STATUS_CODELIST,
    PHASE_CODELIST,
    SUBJECT_STATUS_CODELIST,
    VISIT_OCCURRED,
    VISIT_STATUS_CODELIST,
    flag_type,
    metadata_version_oid,
    study_element,
)
from app.exporters.scope import ExportScope, ScopeKind
from app.models import (
    AuditRecord,
    RoleAssignment,
    Site,
    Subject,
    UserAccount,
    utcnow,
)
from app.study.loader import LOG_EVENT_OID, Study

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
ODM_NSMAP: dict[Any, str] = {None: ODM_NS}
"""Give every element built on its own this map, so that ODM stays the default namespace
(no `ns0:` prefixes) wherever the element is written or appended."""
SYSTEM_USER_OID = "USR.SYSTEM"


def q(tag: str) -> str:
    """The qualified name of an ODM 1.3 element."""
    return f"{{{ODM_NS}}}{tag}"


@dataclass
class ExportCounts:
    """What an export wrote: SubjectData of distinct subjects, and ItemData elements."""

    subjects: int = 0
    items: int = 0


def user_oid(user_id: int | None) -> str:
    return SYSTEM_USER_OID if user_id is None else f"USR.{user_id}"


Sites = dict[int | None, str]
"""Site ids to their Location OIDs."""


@dataclass(frozen=True)
class AdminExtras:
    """What an export adds to the AdminData of its scope: users its ClinicalData names beyond
    the scope's (a board decision's signer), Locations after the sites', and SignatureDefs."""

    users: frozenset[int] = frozenset()
    locations: Sequence[etree._Element] = ()
    signature_defs: Sequence[etree._Element] = ()


@contextmanager
def odm_document(
    path: str, session: Session, study: Study, file_type: str, scope: ExportScope,
    extras: AdminExtras = AdminExtras(),
) -> Iterator[tuple[etree._IncrementalFileWriter, Sites]]:  # fmt: skip
    """Open an ODM file of `file_type` (Snapshot or Transactional) with the study metadata and
    AdminData of `scope` and `extras` written; yields the writer inside ClinicalData and the
    Location OIDs of sites."""
    created = utcnow()
    with etree.xmlfile(path, encoding="UTF-8") as xf:
        xf.write_declaration()
        attributes = {
            "FileType": file_type,
            "FileOID": f"TRIALDESK.{study.info.oid}.{file_type}.{created:%Y%m%dT%H%M%S%f}",
            "CreationDateTime": created.isoformat(timespec="seconds"),
            "ODMVersion": "1.3.2",
            "Originator": "TrialDesk",
        }
        with xf.element(q("ODM"), attributes, nsmap={None: ODM_NS}):
            xf.write(study_element(study))
            admin = admin_data(session, study, scope, extras.users)
            admin.extend(extras.locations)  # after the sites, then the SignatureDefs,
            admin.extend(extras.signature_defs)  # as AdminData orders them
            xf.write(admin)
            mdv = metadata_version_oid(study)
            with xf.element(q("ClinicalData"), StudyOID=study.info.oid, MetaDataVersionOID=mdv):
                sites = session.exec(select(Site).where(Site.study_id == scope.study_id))
                yield xf, {site.id: site.oid for site in sites}


def admin_data(
    session: Session, study: Study, scope: ExportScope, named: frozenset[int] = frozenset()
) -> etree._Element:
    """Users (including the system user of automatic changes) and sites as Locations: for the
    whole study, its sites and the users who hold a role in it or appear in its audit trail;
    for a narrower scope only the sites of its subjects and the users in their audit trail,
    so that a site's export names no one else (nor another study's staff); and in any scope
    the users `named` in the export's ClinicalData."""
    admin = etree.Element(q("AdminData"), StudyOID=study.info.oid, nsmap=ODM_NSMAP)
    system = etree.SubElement(admin, q("User"), OID=SYSTEM_USER_OID)
    etree.SubElement(system, q("FullName")).text = "TrialDesk (system)"
    etree.SubElement(system, q("FirstName")).text = "TrialDesk"
    etree.SubElement(system, q("LastName")).text = "System"
    users = select(UserAccount).order_by(col(UserAccount.id))
    sites = select(Site).where(Site.study_id == scope.study_id).order_by(col(Site.number))
    if scope.kind is ScopeKind.STUDY:
        staff = select(RoleAssignment.user_id).where(RoleAssignment.study_id == scope.study_id)
        authors = select(AuditRecord.user_id).where(AuditRecord.study_id == scope.study_id)
        users = users.where(
            col(UserAccount.id).in_(staff)
            | col(UserAccount.id).in_(authors)
            | col(UserAccount.id).in_(sorted(named))
        )
    else:
        in_scope = scope.subject_condition()
        subjects = select(Subject.id).where(in_scope)
        authors = select(AuditRecord.user_id).where(col(AuditRecord.subject_id).in_(subjects))
        users = users.where(
            col(UserAccount.id).in_(authors) | col(UserAccount.id).in_(sorted(named))
        )
        sites = sites.where(col(Site.id).in_(select(Subject.site_id).where(in_scope)))
    for user in session.exec(users):
        element = etree.SubElement(admin, q("User"), OID=user_oid(user.id))
        etree.SubElement(element, q("LoginName")).text = user.username
        etree.SubElement(element, q("FullName")).text = user.full_name
        first, last = name_parts(user)
        etree.SubElement(element, q("FirstName")).text = first
        etree.SubElement(element, q("LastName")).text = last
    mdv = metadata_version_oid(study)
    for site in session.exec(sites):
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


def name_parts(user: UserAccount) -> tuple[str, str]:
    """ODM FirstName and LastName of an account (other EDCs, OpenEDC among them, need both):
    its given and family names; for an account created without them, the full name split at
    its last space (the whole name as both when it has one word)."""
    if user.given_name and user.family_name:
        return user.given_name, user.family_name
    first, _, last = user.full_name.strip().rpartition(" ")
    return (first, last) if first else (last, last)


# -- audit records ----------------------------------------------------------------------------

OCCURRED_AT = type_coerce(col(AuditRecord.occurred_at), DateTime(timezone=True)).label(
    "occurred_at"
)
"""When a change was recorded, read without the model's per-row conversion to an aware UTC
datetime (a tenth of an export's time): naive UTC on SQLite, aware on PostgreSQL. `as_utc`
converts the few values an export uses."""


def as_utc(moment: datetime) -> datetime:
    """An OCCURRED_AT value as an aware UTC datetime (as app.models.UTCDateTime reads it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


AUDIT_COLUMNS: tuple[Mapped[Any] | ColumnElement[Any], ...] = (
    col(AuditRecord.id),
    # who, where, when, why, through what: the AuditRecord element (indexes 1-5)
    col(AuditRecord.user_id),
    col(AuditRecord.site_id),
    OCCURRED_AT,
    col(AuditRecord.reason),
    col(AuditRecord.source),
    # where in the ClinicalData (indexes 6-12)
    col(AuditRecord.event_oid),
    col(AuditRecord.event_repeat),
    col(AuditRecord.form_oid),
    col(AuditRecord.form_repeat),
    col(AuditRecord.item_group_oid),
    col(AuditRecord.group_repeat),
    col(AuditRecord.item_oid),
    # what changed (indexes 13-16)
    col(AuditRecord.action),
    col(AuditRecord.old_value),
    col(AuditRecord.new_value),
    col(AuditRecord.context),
)
"""The audit columns exports read, as plain rows (no ORM object per record)."""
PATH_COLUMNS = AUDIT_COLUMNS[6:13]
LOCATED_AUDIT_COLUMNS = AUDIT_COLUMNS[:13]
"""The columns of an AuditRecord element and of where the change happened, without what
changed (a snapshot carries the value itself)."""


class AuditRow(NamedTuple):
    """An audit record read as AUDIT_COLUMNS (or its first LOCATED_AUDIT_COLUMNS). A named
    tuple, because a SQLAlchemy Row's attributes cost ten times its indexes per access."""

    id: int
    user_id: int | None
    site_id: int | None
    occurred_at: datetime
    """Naive on SQLite: see OCCURRED_AT."""
    reason: str | None
    source: str
    event_oid: str | None
    event_repeat: int | None
    form_oid: str | None
    form_repeat: int | None
    item_group_oid: str | None
    group_repeat: int | None
    item_oid: str | None
    action: str = ""
    old_value: str | None = None
    new_value: str | None = None
    context: dict[str, Any] | None = None
    """The typed context of the action (`app.audit`), as stored."""

    # The parts of the path a change at that level (or below) always has.
    @property
    def event(self) -> tuple[str, int]:
        assert self.event_oid is not None and self.event_repeat is not None
        return self.event_oid, self.event_repeat

    @property
    def form(self) -> tuple[str, int]:
        assert self.form_oid is not None and self.form_repeat is not None
        return self.form_oid, self.form_repeat

    @property
    def group(self) -> tuple[str, int]:
        assert self.item_group_oid is not None and self.group_repeat is not None
        return self.item_group_oid, self.group_repeat

    @property
    def item(self) -> str:
        assert self.item_oid is not None
        return self.item_oid

    @property
    def value(self) -> str:
        """The new value of a change that sets one (a status, a date)."""
        assert self.new_value is not None
        return self.new_value


def audit_rows(rows: Iterable[Sequence[Any]]) -> Iterator[AuditRow]:
    return (AuditRow(*row) for row in rows)


DataKey = tuple[str | None, int | None, str | None, int | None, str | None, int | None, str | None]
"""Where a change happened: event, repeat, form, repeat, item group, repeat, item; None from
the level the change concerns (a form status change has no item group)."""


def data_key(row: AuditRow) -> DataKey:
    return row[6:13]


def audit_element(row: AuditRow, sites: Sites) -> etree._Element:
    """An ODM AuditRecord: who (UserRef), where (LocationRef), when, why, through what."""
    element = etree.Element(q("AuditRecord"), nsmap=ODM_NSMAP)
    etree.SubElement(element, q("UserRef"), UserOID=user_oid(row.user_id))
    etree.SubElement(element, q("LocationRef"), LocationOID=sites[row.site_id])
    moment = as_utc(row.occurred_at)
    etree.SubElement(element, q("DateTimeStamp")).text = moment.isoformat(timespec="seconds")
    if row.reason:
        etree.SubElement(element, q("ReasonForChange")).text = row.reason
    etree.SubElement(element, q("SourceID")).text = row.source
    return element


class AuditRecords:
    """AuditRecord elements for one subject at a time. The values of one save share who,
    where, when, why and the source, so each distinct record is built once and copied (in C,
    several times faster than building it again)."""

    def __init__(self, sites: Sites) -> None:
        self.sites = sites
        self.built: dict[tuple[Any, ...], etree._Element] = {}

    def next_subject(self) -> None:
        """Forget the records of the previous subject (memory stays bounded by one)."""
        self.built.clear()

    def element(self, row: AuditRow) -> etree._Element:
        key = row[1:6]  # who, where, when, why, through what
        template = self.built.get(key)
        if template is None:
            template = self.built[key] = audit_element(row, self.sites)
        # lxml copies an element with its children; its stubs do not declare __copy__.
        copied: etree._Element = template.__copy__()  # type: ignore[attr-defined]
        return copied


# -- containers -------------------------------------------------------------------------------


class RepeatKeys:
    """Which StudyEvents, Forms and ItemGroups repeat, so that containers carry a repeat key
    exactly when the metadata says they repeat, removed forms and groups included (computed
    once per export)."""

    def __init__(self, study: Study) -> None:
        self.events = {
            v.oid for v in study.schedule.visits if v.repeating and v.oid != LOG_EVENT_OID
        }
        self.forms = {
            (event, form)
            for event in [*(v.oid for v in study.schedule.visits), LOG_EVENT_OID]
            for form in study.forms_of_event(event)
            if study.is_repeating_form(event, form)
        } | {(LOG_EVENT_OID, oid) for oid, form in study.retired.forms.items() if form.repeating}
        self.groups = {
            (form.oid, group.oid)
            for form in study.forms.values()
            for group in form.item_groups
            if group.repeating
        } | {(form, group.oid) for form, group in study.retired.group_items() if group.repeating}

    def event(self, parent: etree._Element, event_oid: str, repeat: int) -> etree._Element:
        element = etree.SubElement(parent, q("StudyEventData"), StudyEventOID=event_oid)
        if event_oid in self.events:
            element.set("StudyEventRepeatKey", str(repeat))
        return element

    def form(
        self, parent: etree._Element, event_oid: str, form_oid: str, repeat: int
    ) -> etree._Element:
        element = etree.SubElement(parent, q("FormData"), FormOID=form_oid)
        if (event_oid, form_oid) in self.forms:
            element.set("FormRepeatKey", str(repeat))
        return element

    def group(
        self, parent: etree._Element, form_oid: str, group_oid: str, repeat: int
    ) -> etree._Element:
        element = etree.SubElement(parent, q("ItemGroupData"), ItemGroupOID=group_oid)
        if (form_oid, group_oid) in self.groups:
            element.set("ItemGroupRepeatKey", str(repeat))
        return element


# -- annotations: one function per kind --------------------------------------------------------

Flag = tuple[str, str]
"""A flag's code list OID and its value."""


def annotate(
    parent: etree._Element,
    flags: Sequence[Flag],
    comment: str | None = None,
    commented_by: str = "Site",
) -> etree._Element:
    """Append an Annotation (numbered after the parent's others) with a Comment (made by the
    "Site" or the "Sponsor") and Flags, and return it. Call after the parent's AuditRecord
    and Signature and before its child data."""
    seq = sum(1 for _ in parent.iterchildren(q("Annotation"))) + 1
    annotation = etree.SubElement(parent, q("Annotation"), SeqNum=str(seq))
    if comment:
        etree.SubElement(annotation, q("Comment"), SponsorOrSite=commented_by).text = comment
    for codelist, value in flags:
        flag = etree.SubElement(annotation, q("Flag"))
        etree.SubElement(flag, q("FlagValue"), CodeListOID=codelist).text = value
        etree.SubElement(flag, q("FlagType"), CodeListOID=FLAG_TYPE_CODELIST).text = flag_type(
            codelist
        )
    return annotation


def subject_status_annotation(
    element: etree._Element, status: str, effective: date | str | None
) -> None:
    """The subject's status (CL.SUBJECTSTATUS) and, as Comment, the date it took effect."""
    when = effective.isoformat() if isinstance(effective, date) else effective
    annotate(element, [(SUBJECT_STATUS_CODELIST, status)], when)


def dose_annotation(element: etree._Element, dose_level: str | None, phase: str | None) -> None:
    """The subject's dose level (CL.DOSELEVEL) and study phase (CL.PHASE), once assigned."""
    flags = [(DOSE_LEVEL_CODELIST, dose_level), (PHASE_CODELIST, phase)]
    present = [(codelist, value) for codelist, value in flags if value]
    if present:
        annotate(element, present)


def visit_date_annotation(element: etree._Element, visit_date: date | str | None) -> None:
    """That the visit took place (CL.VISITSTATUS) and, as Comment, its date."""
    if visit_date:
        when = visit_date.isoformat() if isinstance(visit_date, date) else visit_date
        annotate(element, [(VISIT_STATUS_CODELIST, VISIT_OCCURRED)], when)


def form_status_annotation(element: etree._Element, status: str, reason: str | None) -> None:
    """The form's status (CL.FORMSTATUS) and, for a form not done, the reason as Comment."""
    annotate(element, [(FORM_STATUS_CODELIST, status)], reason)


def not_done_item(parent: etree._Element, item_oid: str, reason: str | None) -> etree._Element:
    """An ItemData of a form not done: IsNull, with the reason the form was not done."""
    element = etree.SubElement(parent, q("ItemData"), ItemOID=item_oid, IsNull="Yes")
    annotate(element, [], reason)
    return element
