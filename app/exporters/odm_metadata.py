"""The study definition as CDISC ODM 1.3.2 metadata: the <Study> element, built with odmlib.

The element holds GlobalVariables, BasicDefinitions (measurement units) and one MetaDataVersion
with the Protocol (visits in schedule order, then the log event `SE.LOG`), StudyEventDefs,
FormDefs, ItemGroupDefs, ItemDefs, CodeLists (the study's, then those of the ClinicalData
Annotation Flags: `flag_codelists`), ConditionDefs (one per `show_if`, expressing when
the item or group is *not* collected) and MethodDefs (one per derivation). Expressions are
carried as FormalExpression with Context "CEL". The output validates against
`app/schemas/odm-1.3.2/ODM1-3-2.xsd`; odmlib emits child elements in schema order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import odmlib.ns_registry as NS
import odmlib.odm_1_3_2.model as ODM
from lxml import etree
from odmlib.odm_element import ODMElement

from app.crf.values import MAX_TEXT_LENGTH
from app.escalation.decisions import KIND_LABELS
from app.exporters import odm_retired as retired
from app.exporters.odm_elements import description, optional, text, yes_no
from app.models import FormStatus, LockLevel, QueryState
from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import (
    CodeList,
    CodeListItem,
    DataType,
    FormDef,
    ItemDef,
    ItemGroupDef,
    Range,
    Visit,
    odm_data_type,
)

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
LOG_EVENT_NAME = "Logs"
NUMBER_DIGITS = 15
"""Most digits before the decimal point the server accepts in a number (app.crf.values)."""

_NAMESPACES = {
    "namespaces": {"odm": ODM_NS, "xml": "http://www.w3.org/XML/1998/namespace"},
    "default": {"odm": ODM_NS},
}
"""Namespaces odmlib serialises our trees with; bound per tree so that another odmlib model
(ODM 2.0 registers a different default namespace) loaded in the process cannot change them."""


FORM_STATUS_CODELIST = "CL.FORMSTATUS"
SUBJECT_STATUS_CODELIST = "CL.SUBJECTSTATUS"
DOSE_LEVEL_CODELIST = "CL.DOSELEVEL"
PHASE_CODELIST = "CL.PHASE"
VISIT_STATUS_CODELIST = "CL.VISITSTATUS"
QUERY_STATE_CODELIST = "CL.QUERYSTATE"
LOCK_STATE_CODELIST = "CL.LOCKSTATE"
BOARD_DECISION_CODELIST = "CL.BOARDDECISION"
FLAG_TYPE_CODELIST = "CL.FLAGTYPE"
VISIT_OCCURRED = "occurred"


def flag_codelists(study: Study) -> list[CodeList]:
    """The code lists of the Annotation Flags in ClinicalData (form status, subject status,
    dose level, phase, visit status, query state, freeze or lock, the safety board's
    decisions) and of their FlagTypes. A study's own list of the same OID (e.g. CL.PHASE on a
    CRF) is used as it is and not repeated; a study without dose levels, phases or a dose
    escalation has no such flags and no list for them."""
    path = study.subject_path
    entries = [
        (
            FORM_STATUS_CODELIST,
            "Form status",
            [(s.value, s.value.replace("_", " ").capitalize()) for s in FormStatus],
        ),
        (SUBJECT_STATUS_CODELIST, "Subject status", [(s.code, s.label) for s in path.statuses]),
        (DOSE_LEVEL_CODELIST, "Dose level", [(d.code, d.label) for d in study.info.dose_levels]),
        (PHASE_CODELIST, "Study phase", [(p.code, p.label) for p in study.info.phases]),
        (VISIT_STATUS_CODELIST, "Visit status", [(VISIT_OCCURRED, "Visit took place")]),
        (
            QUERY_STATE_CODELIST,
            "Query state (ODM 2.0 QueryStateType)",
            [(s.value, s.value.capitalize()) for s in QueryState],
        ),
        (
            LOCK_STATE_CODELIST,
            "Freeze or lock in force",
            [(LockLevel.FREEZE.value, "Frozen: no data changes"), (LockLevel.LOCK.value, "Locked")],
        ),
        (
            BOARD_DECISION_CODELIST,
            "Safety board decision",
            [(kind.value, label) for kind, label in KIND_LABELS.items()]
            if study.escalation
            else [],
        ),
    ]
    lists = [_flag_codelist(oid, name, values) for oid, name, values in entries if values]
    kinds = [(flag_type(codelist.oid), codelist.name) for codelist in lists]
    lists.append(_flag_codelist(FLAG_TYPE_CODELIST, "Kind of annotation flag", kinds))
    return [codelist for codelist in lists if codelist.oid not in study.codelists]


def flag_type(codelist_oid: str) -> str:
    """The FlagType code (in CL.FLAGTYPE) of the flags whose values come from `codelist_oid`."""
    return codelist_oid.removeprefix("CL.")


def _flag_codelist(oid: str, name: str, entries: list[tuple[str, str]]) -> CodeList:
    return CodeList(
        oid=oid,
        name=f"{name} (TrialDesk; in ClinicalData Annotation Flags)",
        items=tuple(CodeListItem(code=code, decode=decode) for code, decode in entries),
    )


def metadata_version_oid(study: Study) -> str:
    """OID of the MetaDataVersion: the study OID and its released version (MDV.ZM001.1)."""
    return study.mdv_oid


def study_element(study: Study) -> etree._Element:
    """The ODM <Study> element of `study`, in the ODM 1.3 namespace, detached from any document."""
    return etree.fromstring(_serialise(_study(study)).encode())


def metadata_document(study: Study, *, file_oid: str, created: datetime) -> bytes:
    """A complete Snapshot ODM 1.3.2 document holding just the study metadata, as UTF-8 XML.

    `created` must carry a time zone; it becomes CreationDateTime in ISO 8601.
    """
    if created.tzinfo is None or created.utcoffset() is None:
        raise ValueError("created must be a timezone-aware datetime")
    odm = ODM.ODM(
        FileOID=file_oid,
        FileType="Snapshot",
        Granularity="Metadata",
        CreationDateTime=created.isoformat(),
        ODMVersion="1.3.2",
        SourceSystem="TrialDesk",
        Study=[_study(study)],
    )
    root = etree.fromstring(_serialise(odm).encode())
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _serialise(element: ODMElement) -> str:
    """XML text of an odmlib tree, with the ODM 1.3 namespace as its default namespace."""
    NS.bind_document_namespaces(element, snapshot=_NAMESPACES)  # type: ignore[no-untyped-call]
    return str(element.to_xml_string())


def _study(study: Study) -> ODM.Study:
    info = study.info
    return ODM.Study(
        OID=info.oid,
        GlobalVariables=ODM.GlobalVariables(
            StudyName=ODM.StudyName(_content=info.name),
            StudyDescription=ODM.StudyDescription(_content=info.description),
            ProtocolName=ODM.ProtocolName(_content=info.protocol),
        ),
        BasicDefinitions=ODM.BasicDefinitions(
            MeasurementUnit=[
                ODM.MeasurementUnit(
                    OID=unit.oid,
                    Name=unit.name or unit.symbol,
                    Symbol=ODM.Symbol(TranslatedText=[text(unit.symbol)]),
                )
                for unit in study.units.values()
            ]
        ),
        MetaDataVersion=[_metadata_version(study)],
    )


def _metadata_version(study: Study) -> ODM.MetaDataVersion:
    groups = [(form, group) for form in study.forms.values() for group in form.item_groups]
    items = [item for _, group in groups for item in group.items]
    conditions = [
        _condition(group.oid, group.name, group.show_if) for _, group in groups if group.show_if
    ] + [_condition(item.oid, item.name, item.show_if) for item in items if item.show_if]
    return ODM.MetaDataVersion(
        OID=metadata_version_oid(study),
        Name=study.info.protocol,
        Description=f"Study definition build sha256:{study.digest}",
        Protocol=_protocol(study),
        StudyEventDef=[_visit_event(study, visit) for visit in study.schedule.visits]
        + _log_event(study),
        FormDef=[_form(study, form) for form in study.forms.values()] + retired.form_defs(study),
        ItemGroupDef=[_item_group(study, form, group) for form, group in groups]
        + retired.group_defs(study),
        ItemDef=[_item(study, item) for item in items] + retired.item_defs(study),
        CodeList=[
            _codelist(codelist) for codelist in [*study.codelists.values(), *flag_codelists(study)]
        ],
        ConditionDef=conditions,
        MethodDef=[_method(item, item.derivation) for item in items if item.derivation],
    )


def _protocol(study: Study) -> ODM.Protocol:
    refs = [(visit.oid, visit.type == "scheduled") for visit in study.schedule.visits]
    if _has_log_event(study):
        refs.append((LOG_EVENT_OID, False))
    return ODM.Protocol(
        StudyEventRef=[
            ODM.StudyEventRef(StudyEventOID=oid, OrderNumber=number, Mandatory=yes_no(mandatory))
            for number, (oid, mandatory) in enumerate(refs, start=1)
        ]
    )


def _visit_event(study: Study, visit: Visit) -> ODM.StudyEventDef:
    event = ODM.StudyEventDef(
        OID=visit.oid,
        Name=visit.name,
        Repeating=yes_no(visit.repeating),
        Type=visit.type.capitalize(),
        FormRef=[
            ODM.FormRef(FormOID=entry.form, OrderNumber=number, Mandatory=yes_no(entry.mandatory))
            for number, entry in enumerate(visit.forms, start=1)
        ]
        + retired.form_refs(study, visit.oid, len(visit.forms) + 1),
    )
    return optional(event, Description=description(visit.notes) if visit.notes else None)


def _log_event(study: Study) -> list[ODM.StudyEventDef]:
    """The StudyEventDef of log forms: none when the study has no log forms (and stores none
    of an earlier version)."""
    if not _has_log_event(study):
        return []
    logs = study.schedule.log_forms
    refs = [
        ODM.FormRef(FormOID=log.form, OrderNumber=number, Mandatory="No")
        for number, log in enumerate(logs, start=1)
    ] + retired.form_refs(study, LOG_EVENT_OID, len(logs) + 1)
    return [
        ODM.StudyEventDef(
            OID=LOG_EVENT_OID, Name=LOG_EVENT_NAME, Repeating="No", Type="Common", FormRef=refs
        )
    ]


def _has_log_event(study: Study) -> bool:
    return bool(study.schedule.log_forms) or any(
        LOG_EVENT_OID in form.events for form in study.retired.forms.values()
    )


def _form(study: Study, form: FormDef) -> ODM.FormDef:
    form_def = ODM.FormDef(
        OID=form.oid,
        Name=form.title,
        Repeating=yes_no(study.is_repeating_form(LOG_EVENT_OID, form.oid)),
        ItemGroupRef=[
            ODM.ItemGroupRef(
                ItemGroupOID=group.oid,
                OrderNumber=number,
                Mandatory=yes_no(not group.repeating),
                CollectionExceptionConditionOID=_condition_oid(group.oid)
                if group.show_if
                else None,
            )
            for number, group in enumerate(form.item_groups, start=1)
        ]
        + retired.group_refs(study, form.oid, len(form.item_groups) + 1),
    )
    return optional(
        form_def, Description=description(form.description) if form.description else None
    )


def _item_group(study: Study, form: FormDef, group: ItemGroupDef) -> ODM.ItemGroupDef:
    return ODM.ItemGroupDef(
        OID=group.oid,
        Name=group.name,
        Repeating=yes_no(group.repeating),
        Domain=form.domain,
        Description=description(group.label),
        ItemRef=[
            ODM.ItemRef(
                ItemOID=item.oid,
                OrderNumber=number,
                Mandatory=yes_no(item.required),
                MethodOID=_method_oid(item.oid) if item.derivation else None,
                CollectionExceptionConditionOID=_condition_oid(item.oid) if item.show_if else None,
            )
            for number, item in enumerate(group.items, start=1)
        ]
        + retired.item_refs(study, group.oid, len(group.items) + 1),
    )


def _item(study: Study, item: ItemDef) -> ODM.ItemDef:
    codelist = study.codelists.get(item.codelist) if item.codelist else None
    item_def = ODM.ItemDef(
        OID=item.oid,
        Name=item.name,
        DataType=odm_data_type(item, codelist),
        Length=_length(item, codelist),
        SignificantDigits=item.decimals if item.type == DataType.FLOAT else None,
        SASFieldName=item.name if len(item.name) <= 8 else None,
        Question=ODM.Question(TranslatedText=[text(item.label)]),
        MeasurementUnitRef=[ODM.MeasurementUnitRef(MeasurementUnitOID=item.units)]
        if item.units
        else [],
        # Derived values are never rejected: the server only flags them, whichever range they
        # break (app.crf.engine), so a derived item's hard range is a soft check.
        RangeCheck=_range_checks(item.hard_range, "Soft" if item.derivation else "Hard")
        + _range_checks(item.soft_range, "Soft"),
    )
    return optional(
        item_def,
        Description=description(item.help) if item.help else None,
        CodeListRef=ODM.CodeListRef(CodeListOID=item.codelist) if item.codelist else None,
    )


def _length(item: ItemDef, codelist: CodeList | None) -> int | None:
    """Longest value the server stores for the item (see app.crf.values); None when unbounded
    or not meaningful (dates, times, booleans, floats without a decimal limit)."""
    if item.type == DataType.TEXT:
        return item.length or MAX_TEXT_LENGTH
    if item.type == DataType.INTEGER:
        return NUMBER_DIGITS
    if item.type == DataType.FLOAT:
        return None if item.decimals is None else NUMBER_DIGITS + item.decimals
    if codelist is not None and item.type == DataType.CHOICE:
        return max(len(code) for code in codelist.codes)
    if codelist is not None and item.type == DataType.MULTICHOICE:
        return len(",".join(codelist.codes))  # every code, comma-separated
    return None


def _range_checks(bounds: Range | None, soft_hard: str) -> list[ODM.RangeCheck]:
    if bounds is None:
        return []
    sides = (("GE", bounds.min), ("LE", bounds.max))
    return [
        ODM.RangeCheck(
            Comparator=comparator,
            SoftHard=soft_hard,
            CheckValue=[ODM.CheckValue(_content=_number(value))],
        )
        for comparator, value in sides
        if value is not None
    ]


def _number(value: float) -> str:
    """Plain decimal notation without exponent or trailing zeros: 18.0 -> "18"."""
    text = format(Decimal(str(value)).normalize(), "f")
    return text if text != "-0" else "0"


def _codelist(codelist: CodeList) -> ODM.CodeList:
    return ODM.CodeList(
        OID=codelist.oid,
        Name=codelist.name,
        DataType=codelist.data_type,
        CodeListItem=[
            ODM.CodeListItem(
                CodedValue=entry.code,
                OrderNumber=number,
                Decode=ODM.Decode(TranslatedText=[text(entry.decode)]),
            )
            for number, entry in enumerate(codelist.items, start=1)
        ],
        Alias=[ODM.Alias(Context="nci:ExtCodeID", Name=codelist.nci_code)]
        if codelist.nci_code
        else [],
    )


def _condition(oid: str, name: str, show_if: str) -> ODM.ConditionDef:
    """The collection exception of an item or group: true when it is *not* collected."""
    return ODM.ConditionDef(
        OID=_condition_oid(oid),
        Name=f"{name} not collected",
        Description=description(f"{name} is not collected unless {show_if}"),
        FormalExpression=[ODM.FormalExpression(Context="CEL", _content=f"!({show_if})")],
    )


def _method(item: ItemDef, derivation: str) -> ODM.MethodDef:
    """How the server computes a derived item."""
    return ODM.MethodDef(
        OID=_method_oid(item.oid),
        Name=f"Derivation of {item.name}",
        Type="Computation",
        Description=description(f"{item.label}, computed by the server"),
        FormalExpression=[ODM.FormalExpression(Context="CEL", _content=derivation)],
    )


def _condition_oid(oid: str) -> str:
    return f"CD.{oid}"


def _method_oid(oid: str) -> str:
    return f"MT.{oid}"
