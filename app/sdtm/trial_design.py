"""SDTM trial design datasets (SDTMIG 3.4 §7): Trial Arms (TA), Trial Elements (TE), Trial
Visits (TV), Trial Inclusion/Exclusion Criteria (TI) and Trial Summary (TS,
`app.sdtm.trial_summary`), built from the study definition, not from subjects' data.

A mapping in `exports/` with the record source `trial_design: TA` describes the dataset; its
variables read the fields of the records built here (`app.sdtm.trial_fields`) by `item`, or are
constants (DOMAIN). What each record holds:

- TA: one arm per planned arm as DM names them (`planned_arms`: a dose level in a phase,
  `app.sdtm.arms`, or the one arm of the DM mapping), and for each arm the elements of the
  schedule's periods in order; the arm is decided (TABRANCH) at the end of the element of the
  period `design.arm_assignment` names.
- TE: one record per period's element (ETCD, ELEMENT, TESTRL, TEENRL).
- TV: one record per scheduled visit; VISITDY when the visit is timed from the study-day
  anchor (day 0 of the schedule is study day 1, the day before is -1); the start and end
  rules in words from the anchor, the day and the window. The visits are the same in every
  arm, so ARMCD is null.
- TI: one record per preset criterion row of the form the IE mapping reads (IETESTCD, IETEST,
  IECAT by the IE variables' items), TIVERS the form's version.
- TS: SSTDTC is the earliest informed consent date (the item DM's RFICDTC reads) of any subject
  of the study in the database, whatever the export's scope.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.models import FormData, ItemData, ItemGroupData, StudyEventData, Subject
from app.sdtm.arms import Arm, arm_of
from app.sdtm.dataset import Column, Table
from app.sdtm.derive import Value
from app.sdtm.spec import DomainSpec, SdtmSpecs
from app.sdtm.trial_summary import trial_summary_records
from app.study.loader import Study, find_item
from app.study.model import Visit

Record = dict[str, Value]
REFERENCE_DOMAIN = "DM"
CRITERIA_DOMAIN = "IE"


def trial_design_table(
    session: Session,
    study: Study,
    specs: SdtmSpecs,
    spec: DomainSpec,
    dictionaries: Mapping[str, str] | None = None,
) -> Table:
    """The dataset of the trial-design mapping `spec`: its variables in order, each row one
    record of its kind; `dictionaries` (name -> version, none by default) go to TS."""
    kind = spec.trial_design
    records: list[Record]
    if kind == "TS":
        start = study_start(session, study, specs)
        records = trial_summary_records(study, len(planned_arms(study, specs)), start, dictionaries)
    elif kind == "TA":
        records = arm_records(study, specs)
    elif kind == "TE":
        records = element_records(study)
    elif kind == "TV":
        records = visit_records(study)
    elif kind == "TI":
        records = criterion_records(study, specs)
    else:
        raise ValueError(f"{spec.domain} is not a trial-design mapping")
    keys = {name: order for order, name in enumerate(spec.keys, start=1)}
    # Num fields are doubles, as `build.json_data_type` (and so Define-XML) types a variable
    # that copies no integer eCRF item
    columns = [
        Column(var.name, var.label, var.type, "string" if var.type == "Char" else "double",
               keys.get(var.name))
        for var in spec.variables
    ]  # fmt: skip
    table = Table(spec.domain, spec.label, columns)
    for record in records:
        row: list[Value] = []
        for var in spec.variables:
            value = var.constant if var.constant is not None else record.get(var.item or "")
            row.append(None if value is None else float(value) if var.type == "Num" else value)
        table.rows.append(row)
    return table


def planned_arms(study: Study, specs: SdtmSpecs) -> list[Arm]:
    """The arms DM assigns, from the arguments of DM's ARM derivation: the study's one arm
    (`arm_code`, `arm_label`), else every dose level in every phase, named as `arm_of` names
    them with the mapping's `phase_codes` (escalation first, by level). None without DM."""
    dm = specs.domain(REFERENCE_DOMAIN)
    variable = dm.variable("ARM") if dm else None
    if variable is None or variable.derivation is None or variable.derivation.name != "arm":
        return []
    args = variable.derivation.args
    if "arm_code" in args:
        return [Arm(args["arm_code"], args.get("arm_label", args["arm_code"]))]
    phase_codes: dict[str, str] = args.get("phase_codes", {})
    phases: list[str | None] = [phase.code for phase in study.info.phases] or [None]
    return [
        arm_of(study, level.code, phase, phase_codes)
        for phase in phases
        for level in study.info.dose_levels
    ]


def arm_records(study: Study, specs: SdtmSpecs) -> list[Record]:
    """TA: each planned arm's elements in order."""
    design = study.info.design
    assignment = design.arm_assignment if design else None
    elements = [(p, p.element) for p in study.schedule.periods if p.element is not None]
    records: list[Record] = []
    for arm in planned_arms(study, specs):
        for order, (period, element) in enumerate(elements, start=1):
            branch = (
                f"{assignment.rule} {arm.label}"
                if assignment and assignment.period == period.oid
                else None
            )
            records.append(
                {
                    "STUDYID": study.info.oid,
                    "ARMCD": arm.code,
                    "ARM": arm.label,
                    "TAETORD": float(order),
                    "ETCD": element.code,
                    "ELEMENT": element.name,
                    "TABRANCH": branch,
                    "TATRANS": None,
                    "EPOCH": period.epoch,
                }
            )
    return records


def element_records(study: Study) -> list[Record]:
    """TE: one record per element, in the order of the periods."""
    return [
        {
            "STUDYID": study.info.oid,
            "ETCD": period.element.code,
            "ELEMENT": period.element.name,
            "TESTRL": period.element.start_rule,
            "TEENRL": period.element.end_rule,
            "TEDUR": None,
        }
        for period in study.schedule.periods
        if period.element is not None
    ]


def visit_records(study: Study) -> list[Record]:
    """TV: one record per scheduled visit, in schedule order."""
    schedule = study.schedule
    anchors = {anchor.id: anchor.label for anchor in schedule.anchors}
    records: list[Record] = []
    for visit in schedule.visits:
        if visit.type != "scheduled" or visit.anchor is None or visit.day is None:
            continue
        start, end = _visit_rules(visit, visit.day, anchors[visit.anchor])
        timed = visit.anchor == schedule.study_day_anchor
        records.append(
            {
                "STUDYID": study.info.oid,
                "VISITNUM": visit.visitnum,
                "VISIT": visit.name,
                "VISITDY": float(_study_day(visit.day)) if timed else None,
                "ARMCD": None,
                "TVSTRL": start,
                "TVENRL": end,
            }
        )
    return records


def _study_day(offset: int) -> int:
    """The SDTM study day of a day offset from the study-day anchor: no day 0."""
    return offset + 1 if offset >= 0 else offset


def _visit_rules(visit: Visit, day: int, anchor: str) -> tuple[str, str]:
    """TVSTRL and TVENRL in words: the window's first and last day (else the planned `day`)
    relative to the anchor."""
    window = visit.window
    earliest, latest = (window.earliest, window.latest) if window else (day, day)
    start = f"Start of day {earliest} relative to {anchor} (planned day {day})"
    return start, f"End of day {latest} relative to {anchor}"


def criterion_records(study: Study, specs: SdtmSpecs) -> list[Record]:
    """TI: the preset criterion rows of the item groups the IE mapping reads, each once."""
    ie = specs.domain(CRITERIA_DOMAIN)
    if ie is None:
        return []
    items = {
        name: (variable.item or "").rpartition(".")[2]
        for name in ("IETESTCD", "IETEST", "IECAT")
        if (variable := ie.variable(name)) is not None
    }
    records: list[Record] = []
    seen: set[str] = set()
    for source in ie.sources:
        form = study.forms.get(source.form or "")
        if form is None:
            continue
        group_oid = source.item_group or form.item_groups[0].oid
        group = next(group for group in form.item_groups if group.oid == group_oid)
        if group.oid in seen:
            continue
        seen.add(group.oid)
        for row in group.rows:
            record: Record = {"STUDYID": study.info.oid, "TIVERS": form.version}
            records.append(record | {name: row.get(item) for name, item in items.items()})
    return records


def consent_item(specs: SdtmSpecs) -> str | None:
    """The `FORM.ITEM` of the informed consent date: what DM's RFICDTC reads (its item, or the
    date of its `dtc` derivation)."""
    dm = specs.domain(REFERENCE_DOMAIN)
    variable = dm.variable("RFICDTC") if dm else None
    if variable is None:
        return None
    if variable.item is not None:
        return variable.item
    if variable.derivation is not None and variable.derivation.name == "dtc":
        date = variable.derivation.args.get("date")
        return date if isinstance(date, str) else None
    return None


def study_start(session: Session, study: Study, specs: SdtmSpecs) -> str | None:
    """SSTDTC: the earliest informed consent date of any subject of the study, or None."""
    reference = consent_item(specs)
    form_name, _, item_name = (reference or "").rpartition(".")
    form = study.form_by_name(form_name)
    found = find_item(form, item_name) if form else None
    if form is None or found is None:
        return None
    statement = (
        select(func.min(ItemData.value))
        .join(ItemGroupData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
        .join(FormData, col(ItemGroupData.form_data_id) == col(FormData.id))
        .join(StudyEventData, col(FormData.study_event_id) == col(StudyEventData.id))
        .join(Subject, col(StudyEventData.subject_id) == col(Subject.id))
        .where(col(Subject.study_id) == study.id)
        .where(col(FormData.form_oid) == form.oid)
        .where(col(ItemData.item_oid) == found[1].oid)
        .where(col(ItemData.value).is_not(None), col(ItemData.value) != "")
    )
    return session.exec(statement).one()
