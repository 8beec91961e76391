"""SDTM export of the demo study on SQLite and PostgreSQL: the three formats hold the same
values, Dataset-JSON is schema-valid, every dataset passes the SDTMIG rule checks, --SEQ is
stable, scopes select subjects, long text is split per SDTMIG, DM carries arms and deaths, and
`study check` reports a broken mapping with its file and line."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyreadstat
import pytest
from jsonschema import Draft201909Validator
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import cli
from app.crf import reads
from app.crf.changes import FormRef
from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.exporters.scope import ExportScope, Progress, ScopeKind, no_progress
from app.models import Subject
from app.sdtm.build import write_sdtm
from app.sdtm.dataset import SdtmDataset
from app.sdtm.derive import (
    RecordContext,
    RowValues,
    SubjectData,
    SubjectInfo,
    dtc,
    sdtm_day,
    study_day,
    visit_name,
    visit_number,
)
from app.sdtm.rules import check_dataset, read_written
from app.sdtm.spec import SdtmSpecs, load_sdtm_specs, sdtm_problems
from app.sdtm.subject_elements import marks_period
from app.sdtm.writers import SdtmWriteError, long_text_pieces, supp_qnam
from app.study.loader import LOG_EVENT_OID, Study
from tests import factories
from tests.conftest import REPO, bound_zm001

EXPORTS = REPO / "exports"
DATASET_JSON_SCHEMA = REPO / "app" / "schemas" / "dataset-json-1.1" / "dataset.schema.json"

Cell = str | float | None


@dataclass(frozen=True)
class Export:
    """One export of the whole demo study: its datasets by name."""

    datasets: dict[str, SdtmDataset]


@pytest.fixture(scope="module")
def demo(module_database_url: str, zm001: Study) -> Iterator[Engine]:
    """The 20-subject demo study, built once per backend for the whole module."""
    engine = make_engine(module_database_url)
    load_demo(engine, zm001, subjects=len(SCENARIOS))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def specs(zm001: Study) -> SdtmSpecs:
    return load_sdtm_specs(EXPORTS, zm001)


def export(
    engine: Engine,
    study: Study,
    specs: SdtmSpecs,
    out_dir: Path,
    scope: ExportScope | None = None,
    formats: frozenset[str] = frozenset({"xpt", "json", "csv"}),
    progress: Progress = no_progress,
) -> Export:
    out_dir.mkdir(parents=True, exist_ok=True)
    with Session(engine) as session:
        datasets = write_sdtm(
            session, study, specs, out_dir, scope or ExportScope(study_id=1), formats, progress
        )
    return Export({dataset.name: dataset for dataset in datasets})


@pytest.fixture(scope="module")
def full(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path_factory: pytest.TempPathFactory
) -> Export:
    return export(demo, zm001, specs, tmp_path_factory.mktemp("sdtm"))


def records(dataset: SdtmDataset) -> list[dict[str, Cell]]:
    columns, rows = read_written(dataset)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def dm_record(full: Export, usubjid: str) -> dict[str, Cell]:
    return next(row for row in records(full.datasets["DM"]) if row["USUBJID"] == usubjid)


def subjects_with_status(engine: Engine, status: str) -> list[str]:
    with Session(engine) as session:
        keys = session.exec(select(Subject.subject_key).where(Subject.status == status)).all()
    return [f"ZM001-{key}" for key in keys]


def _same(value: object) -> Cell:
    """A cell as the three formats agree on it: null for "", NaN and null; numbers as floats."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int | float):
        return float(value)
    assert isinstance(value, str)
    return value


def test_every_mapping_in_exports_loads_and_checks(zm001: Study) -> None:
    assert sdtm_problems(EXPORTS, zm001) == []
    assert {"DM", "DS", "IE"} <= {spec.domain for spec in load_sdtm_specs(EXPORTS, zm001).domains}


def test_xpt_json_and_csv_hold_the_same_values(full: Export) -> None:
    assert {"DM", "SUPPDM", "DS", "IE"} <= set(full.datasets)
    for dataset in full.datasets.values():
        assert set(dataset.files) == {"xpt", "json", "csv"}
        assert [path.name for path in dataset.files.values()] == [
            f"{dataset.name.lower()}.{suffix}" for suffix in ("xpt", "json", "csv")
        ]
        frame, meta = pyreadstat.read_xport(str(dataset.files["xpt"]))
        content = json.loads(dataset.files["json"].read_text(encoding="utf-8"))
        names = [column["name"] for column in content["columns"]]
        numeric = {c["name"] for c in content["columns"] if c["dataType"] != "string"}
        assert list(frame.columns) == names
        assert meta.table_name == dataset.name
        assert meta.file_label == dataset.label
        assert meta.column_labels == [column["label"] for column in content["columns"]]
        assert len(frame) == content["records"] == dataset.rows == len(content["rows"])

        xpt = [[_same(value) for value in row] for row in frame.itertuples(index=False)]
        from_json = [[_same(value) for value in row] for row in content["rows"]]
        columns, csv_rows = read_written(
            SdtmDataset(dataset.name, dataset.label, 0, {"csv": dataset.files["csv"]}, {})
        )
        assert columns == names
        from_csv = [
            [
                _same(float(value) if name in numeric and value else value)
                for name, value in zip(names, row, strict=True)
            ]
            for row in csv_rows
        ]
        assert xpt == from_json == from_csv, dataset.name


def test_dataset_json_files_are_valid_against_the_vendored_schema(full: Export) -> None:
    validator = Draft201909Validator(json.loads(DATASET_JSON_SCHEMA.read_text()))
    for dataset in full.datasets.values():
        content = json.loads(dataset.files["json"].read_text(encoding="utf-8"))
        errors = [error.message for error in validator.iter_errors(content)]
        assert errors == [], dataset.name
        assert content["datasetJSONVersion"] == "1.1.0"
        assert content["itemGroupOID"] == f"IG.{dataset.name}"
        assert content["metaDataRef"] == "define.xml"
        assert content["studyOID"] == "ZM001"


def test_every_exported_dataset_passes_the_sdtm_rule_checks(
    full: Export, specs: SdtmSpecs, zm001: Study
) -> None:
    for dataset in full.datasets.values():
        assert check_dataset(dataset, specs, zm001) == [], dataset.name


def test_rule_checks_report_what_breaks_the_rules(
    full: Export, specs: SdtmSpecs, zm001: Study, tmp_path: Path
) -> None:
    content = json.loads(full.datasets["DS"].files["json"].read_text(encoding="utf-8"))
    names = [column["name"] for column in content["columns"]]
    first, second = content["rows"][0], content["rows"][1]
    second[names.index("USUBJID")] = first[names.index("USUBJID")]
    second[names.index("DSSEQ")] = first[names.index("DSSEQ")]
    first[names.index("DSSTDTC")] = "2026-13-01"
    first[names.index("DSSTDY")] = 0
    first[names.index("DSCAT")] = "FINISHED"
    broken = tmp_path / "ds.json"
    broken.write_text(json.dumps(content))
    problems = check_dataset(
        SdtmDataset("DS", "Disposition", 2, {"json": broken}, {}), specs, zm001
    )
    usubjid = first[names.index("USUBJID")]
    assert f"DS {usubjid}: DSSEQ {first[names.index('DSSEQ')]} is not unique" in problems
    assert f"DS {usubjid}: DSSTDTC '2026-13-01' is not ISO 8601" in problems
    assert f"DS {usubjid}: DSSTDY is 0 (SDTM has no day 0)" in problems
    assert f"DS {usubjid}: DSCAT 'FINISHED' is not in its code list" in problems


def test_datasets_are_sorted_by_their_keys_without_empty_permissible_variables(
    full: Export, specs: SdtmSpecs
) -> None:
    """Every dataset has records, its rows in the order of the keys it declares; permissible
    variables null in every row are dropped, required and expected ones kept."""
    for name, dataset in full.datasets.items():
        columns, rows = read_written(dataset)
        assert rows, f"{name} is written without records"
        spec = specs.domain(name.removeprefix("SUPP"))
        assert spec is not None
        keys = [*SUPP_KEYS] if name.startswith("SUPP") else list(spec.keys)
        at = [columns.index(key) for key in keys if key in columns]
        order = [tuple(_sort_value(row[i]) for i in at) for row in rows]
        assert order == sorted(order), f"{name} is not sorted by {', '.join(keys)}"
        if name.startswith("SUPP"):
            continue
        assert columns == [v.name for v in spec.variables if v.core != "Perm" or v.name in columns]
        for var in spec.variables:
            if var.core == "Perm" and var.name in columns:
                at_var = columns.index(var.name)
                assert any(row[at_var] is not None for row in rows), f"{name}.{var.name}"
    assert "LBENDTC" not in read_written(full.datasets["LB"])[0], "never collected"
    assert "LBSTRESC" in read_written(full.datasets["LB"])[0], "expected variables stay"


SUPP_KEYS = ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM")


def _sort_value(value: object) -> tuple[int, float, str]:
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, int | float):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def test_a_subject_without_a_domains_records_gets_no_file_for_it(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path: Path
) -> None:
    (failure, *_) = subjects_with_status(demo, "screen_failed")
    with Session(demo) as session:
        subject = session.exec(
            select(Subject).where(Subject.subject_key == failure.removeprefix("ZM001-"))
        ).one()
    scope = ExportScope(ScopeKind.SUBJECT, study_id=1, subject_id=subject.id)
    alone = export(demo, zm001, specs, tmp_path, scope)
    assert {"DM", "DS", "IE"} <= set(alone.datasets)
    assert not {"EX", "SUPPEX", "AE"} & set(alone.datasets), "never treated, no adverse event"
    assert not (tmp_path / "ex.xpt").exists()


def test_a_second_export_gives_the_same_records_and_seq_numbers(
    demo: Engine, zm001: Study, specs: SdtmSpecs, full: Export, tmp_path: Path
) -> None:
    steps: list[tuple[int, int]] = []
    again = export(demo, zm001, specs, tmp_path, formats=frozenset({"xpt"}), progress=_step(steps))
    assert steps == [(done, len(SCENARIOS)) for done in range(1, len(SCENARIOS) + 1)]
    for name, dataset in full.datasets.items():
        assert set(again.datasets[name].files) == {"xpt"}
        assert records(again.datasets[name]) == records(dataset), name


def _step(steps: list[tuple[int, int]]) -> Progress:
    return lambda done, total: steps.append((done, total))


def test_a_cohort_export_holds_only_that_cohorts_subjects(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path: Path
) -> None:
    with Session(demo) as session:
        dl2 = session.exec(select(Subject.subject_key).where(Subject.dose_level == "DL2")).all()
    cohort = export(
        demo, zm001, specs, tmp_path, ExportScope(ScopeKind.COHORT, study_id=1, dose_level="DL2")
    )
    dm = records(cohort.datasets["DM"])
    assert sorted(row["SUBJID"] for row in dm) == sorted(dl2)
    assert {row["ARMCD"] for row in dm} <= {"DL2-ESC", "DL2-EXP"}
    assert {row["ARM"] for row in dm} <= {
        "DL2 dose escalation: 5x10^7 CAR-T cells",
        "DL2 dose expansion: 5x10^7 CAR-T cells",
    }
    for dataset in cohort.datasets.values():
        # TS, TA, ... and dataset-level relationships (RELREC, FA to CE) belong to no subject
        subjects = {row.get("USUBJID") for row in records(dataset)} - {None}
        assert subjects <= {f"ZM001-{k}" for k in dl2}


def test_a_screen_failure_has_no_arm_and_the_reason_in_armnrs(demo: Engine, full: Export) -> None:
    failures = subjects_with_status(demo, "screen_failed")
    assert failures
    for usubjid in failures:
        dm = dm_record(full, usubjid)
        assert (dm["ARMCD"], dm["ARM"], dm["ACTARMCD"], dm["ACTARM"]) == (None, None, None, None)
        assert dm["ARMNRS"] == "SCREEN FAILURE"
        assert dm["RFSTDTC"] is None and dm["RFICDTC"] is not None
        ie = [row for row in records(full.datasets["IE"]) if row["USUBJID"] == usubjid]
        assert ie and all(row["IEORRES"] in ("N", "Y") for row in ie)
        ds = [row for row in records(full.datasets["DS"]) if row["USUBJID"] == usubjid]
        assert [(row["DSDECOD"], row["EPOCH"]) for row in ds] == [
            ("INFORMED CONSENT OBTAINED", "SCREENING"),
            ("SCREEN FAILURE", "SCREENING"),
        ]


def test_an_infused_subject_has_arms_reference_dates_and_study_days(
    demo: Engine, full: Export
) -> None:
    usubjid = subjects_with_status(demo, "completed")[0]
    dm = dm_record(full, usubjid)
    assert dm["ARMCD"] == dm["ACTARMCD"] == "DL1-ESC" and dm["ARMNRS"] is None
    assert dm["ACTARM"] == "DL1 dose escalation: 2.5x10^7 CAR-T cells"
    assert len(str(dm["RFSTDTC"])) == 19 and str(dm["RFXSTDTC"]) < str(dm["RFSTDTC"])
    assert str(dm["RFICDTC"]) < str(dm["RFSTDTC"])
    assert dm["DMDY"] is not None and dm["DMDY"] < 0
    ds = [row for row in records(full.datasets["DS"]) if row["USUBJID"] == usubjid]
    completion = next(row for row in ds if row["DSDECOD"] == "COMPLETED")
    assert completion["DSSTDTC"] == dm["RFENDTC"]
    assert completion["DSSTDY"] is not None and completion["DSSTDY"] > 1
    assert completion["EPOCH"] == "FOLLOW-UP"


def test_the_subject_who_died_has_dthfl_and_a_death_disposition(demo: Engine, full: Export) -> None:
    died = subjects_with_status(demo, "died")
    assert len(died) == 1
    dm = dm_record(full, died[0])
    assert dm["DTHFL"] == "Y" and dm["DTHDTC"] is not None
    ds = [row for row in records(full.datasets["DS"]) if row["USUBJID"] == died[0]]
    assert any(row["DSDECOD"] == "DEATH" and row["DSSTDTC"] == dm["DTHDTC"] for row in ds)
    alive = [row for row in records(full.datasets["DM"]) if row["USUBJID"] != died[0]]
    assert all(row["DTHFL"] is None and row["DTHDTC"] is None for row in alive)


DEATH_DETAILS = """
domain: DD
label: Death Details
class: Findings
structure: One record per finding per subject
keys: [STUDYID, USUBJID, DDTESTCD]
sources:
  - form: F.DD
variables:
  - {name: STUDYID, label: Study Identifier, type: Char, core: Req, role: Identifier,
     origin: Protocol, derivation: studyid}
  - {name: DOMAIN, label: Domain Abbreviation, type: Char, core: Req, role: Identifier,
     origin: Assigned, constant: DD}
  - {name: USUBJID, label: Unique Subject Identifier, type: Char, core: Req, role: Identifier,
     origin: {type: Derived, method: STUDYID-SUBJID}, derivation: usubjid}
  - {name: DDSEQ, label: Sequence Number, type: Num, core: Req, role: Identifier,
     origin: {type: Derived, method: entry order}, derivation: seq}
  - {name: DDTESTCD, label: Death Detail Assessment Short Name, type: Char, core: Req,
     role: Topic, origin: Assigned, constant: SECDTHCS}
  - {name: DDORRES, label: Result or Finding in Original Units, type: Char, core: Exp,
     role: Result Qualifier, origin: {type: Collected, form: F.DD}, item: DTHCONTR}
"""


def _set_item(engine: Engine, form_oid: str, item_oid: str, usubjid: str, value: str) -> None:
    """Change an item of the subject's log form (outside repeating groups), as its site's
    investigator would, with a reason."""
    with Session(engine) as session:
        subject = session.exec(
            select(Subject).where(Subject.subject_key == usubjid.removeprefix("ZM001-"))
        ).one()
        study = bound_zm001()
        form = study.form(form_oid)
        ref = FormRef(LOG_EVENT_OID, 1, form_oid, 1)
        stored = reads.load_form(session, subject, form, ref)
        assert stored is not None
        group, item = next((g, i) for g in form.item_groups for i in g.items if i.oid == item_oid)
        rows = {group.oid: {1: {**stored.rows[group.oid][1], item.name: value or None}}}
        site = "" if subject.site_id == 1 else str(subject.site_id)
        outcome = factories.save(
            session, study, subject, form_oid, rows, event=LOG_EVENT_OID,
            reason="test data", by=f"investigator{site}",
        )  # fmt: skip
        assert outcome.saved, outcome.evaluation.errors


def test_text_over_200_characters_is_split_into_supp_records_at_word_boundaries(
    demo: Engine, zm001: Study, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy(EXPORTS / "DM.yaml", exports)
    (exports / "DD.yaml").write_text(DEATH_DETAILS)
    specs = load_sdtm_specs(exports, zm001)
    usubjid = subjects_with_status(demo, "died")[0]
    words = "Contributing: severe neutropenia with prolonged cytopenia after lymphodepletion"
    text = " ".join([words] * 4)
    assert 200 < len(text) <= 400  # the item takes 400: two pieces of at most 200
    _set_item(demo, "F.DD", "IT.DD.DTHCONTR", usubjid, text)
    try:
        result = export(demo, zm001, specs, tmp_path / "out")
    finally:
        _set_item(demo, "F.DD", "IT.DD.DTHCONTR", usubjid, "")

    (dd,) = records(result.datasets["DD"])
    supp = [row for row in records(result.datasets["SUPPDD"]) if row["USUBJID"] == usubjid]
    pieces = [str(dd["DDORRES"])] + [str(row["QVAL"]) for row in supp]
    assert "".join(pieces) == text
    assert pieces == long_text_pieces(text)
    assert all(len(piece) <= 200 for piece in pieces) and len(pieces) == 2
    assert all(piece.startswith(" ") for piece in pieces[1:])  # cut between words
    assert [(row["QNAM"], row["IDVAR"], row["IDVARVAL"]) for row in supp] == [
        ("DDORRES1", "DDSEQ", "1"),
    ]
    assert supp[0]["QLABEL"] == "Result or Finding in Original Units 1"
    assert result.datasets["DD"].lengths["DDORRES"] == len(pieces[0]) > 190
    frame, _meta = pyreadstat.read_xport(str(result.datasets["SUPPDD"].files["xpt"]))
    assert "".join(frame["QVAL"]) == "".join(pieces[1:])


def test_non_ascii_text_stops_the_xpt_export_naming_subject_and_variable(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path: Path
) -> None:
    usubjid = subjects_with_status(demo, "died")[0]
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "DD.yaml").write_text(DEATH_DETAILS)
    dd_specs = load_sdtm_specs(exports, zm001)
    _set_item(demo, "F.DD", "IT.DD.DTHCONTR", usubjid, "肺炎 pneumonia")
    try:
        with pytest.raises(SdtmWriteError) as raised:
            export(demo, zm001, dd_specs, tmp_path / "out")
    finally:
        _set_item(demo, "F.DD", "IT.DD.DTHCONTR", usubjid, "")
    assert f"{usubjid}: DD.DDORRES: non-ASCII text '肺炎 pneumonia'" in str(raised.value)


def test_study_check_reports_a_broken_mapping_with_file_and_line(
    zm001: Study, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    shutil.copytree(EXPORTS, exports)
    text = (exports / "DM.yaml").read_text()
    text = text.replace("item: DM.BRTHDAT", "item: DM.BIRTHDAT")
    text = text.replace("name: death_flag,", "name: death_flags,")
    text = text.replace("constant: CHN", "constant: CN")
    (exports / "DM.yaml").write_text(text)
    lines = text.splitlines()

    def line_of(fragment: str) -> int:
        return next(n for n, line in enumerate(lines, start=1) if fragment in line)

    problems = [str(problem) for problem in sdtm_problems(exports, zm001)]
    assert problems == [
        f"exports/DM.yaml:{line_of('death_flags')}: variables[11].derivation.name: "
        "unknown derivation 'death_flags'",
        f"exports/DM.yaml:{line_of('DM.BIRTHDAT')}: variables[13].item: unknown item DM.BIRTHDAT",
        f"exports/DM.yaml:{line_of('constant: CN')}: variables[25].constant: "
        "'CN' is not a value of its code list",
    ]
    result = CliRunner().invoke(
        cli, ["study", "check", str(REPO / "forms"), "--exports", str(exports)]
    )
    assert result.exit_code == 1
    assert "unknown item DM.BIRTHDAT" in result.output


def test_study_check_covers_exports(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["study", "check", str(REPO / "forms"), "--exports", str(EXPORTS)]
    )
    assert result.exit_code == 0, result.output
    assert "SDTM domains" in result.output


def _context(study: Study, values: dict[str, str], reference_start: str | None) -> RecordContext:
    row = RowValues(
        form_oid="F.MH", form_name="MH", event_oid="SE.SCR", event_repeat=1, form_repeat=1,
        item_group_oid="IG.MH", group_repeat=1, visit_date=date(2026, 3, 2), values=values,
        order=1,
    )  # fmt: skip
    subject = SubjectInfo("ZM001", "01-001", "ZM001-01-001", "01", "DL1", None, "infused")
    data = SubjectData(subject=subject, rows=(row,), anchors={}, study=study)
    return RecordContext(study, data, "MH", row, 1, reference_start=reference_start)


def test_dates_stay_partial_and_study_days_skip_day_0(zm001: Study) -> None:
    context = _context(zm001, {"STDAT": "2026-03", "DAT": "2026-03-10", "TIM": "08:30:00"}, None)
    assert dtc(context, "STDAT", "TIM") == "2026-03"  # a time joins only a complete date
    assert dtc(context, "DAT", "TIM") == "2026-03-10T08:30:00"
    assert dtc(context, "DAT") == "2026-03-10"
    assert [sdtm_day(date(2026, 3, d), date(2026, 3, 10)) for d in (8, 9, 10, 11)] == [-2, -1, 1, 2]
    context = _context(zm001, {}, "2026-03-10T10:00:00")
    context.record.update({"MHSTDTC": "2026-03", "MHENDTC": "2026-03-09"})
    assert study_day(context, "MHSTDTC") is None  # partial: no study day
    assert study_day(context, "MHENDTC") == -1.0


def test_repeating_visits_get_numbered_visitnum_and_visit(zm001: Study) -> None:
    unscheduled, long_term, early = (zm001.visit(oid) for oid in ("SE.UNS", "SE.LTFU", "SE.ET"))
    assert unscheduled is not None and long_term is not None and early is not None
    assert [visit_number(unscheduled, k) for k in (1, 2)] == [99.01, 99.02]
    assert visit_name(unscheduled, 2) == "Unscheduled 2"
    assert [visit_number(long_term, k) for k in (1, 2)] == [21.01, 21.02]
    assert visit_name(long_term, 1) == f"{long_term.name} 1"
    assert visit_number(early, 1) == 90 and visit_name(early, 1) == early.name
    assert marks_period(zm001, long_term)  # the only visits of long-term follow-up
    assert not marks_period(zm001, unscheduled) and not marks_period(zm001, early)


def test_a_word_longer_than_200_characters_is_cut_at_200() -> None:
    text = "x" * 450
    assert [len(piece) for piece in long_text_pieces(text)] == [200, 200, 50]
    assert supp_qnam("AETERM", 1) == "AETERM1" and supp_qnam("IETESTCD", 12) == "IETEST12"
