"""DM arms of ZM001: an arm is a dose level in a phase (DL1-ESC), the planned one assigned at
enrolment and the actual one judged by the delivered dose (`app.sdtm.arms`). Subjects enrolled
and infused through the write path, at levels the escalation has opened, on both databases."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from app.exporters.scope import ExportScope, ScopeKind
from app.models import Subject, pk
from app.sdtm.arms import Arm, arm_of, delivered_level
from app.sdtm.build import write_sdtm
from app.sdtm.rules import read_written
from app.sdtm.spec import load_sdtm_specs
from app.study.loader import Study
from tests import factories
from tests.conftest import REPO

ENROLLED = date(2026, 1, 10)
CRITERIA = [f"IN{n:02d}" for n in range(1, 12)] + [f"EX{n:02d}" for n in range(1, 14)]
"""The eligibility form's preset rows in order: inclusions met (Y), exclusions absent (N)."""
PHASES = {"ESCALATION": "ESC", "EXPANSION": "EXP"}


def enrolled(session: Session, study: Study, level: str) -> Subject:
    """A new subject, consented, eligible and enrolled at `level` in the dose escalation."""
    subject = factories.register(session, study)
    consent = {"ICVER": "2.0", "ICDAT": "2026-01-05", "ICLTFU": "Y"}
    saved(factories.save(session, study, subject, "F.IC", {"IG.IC": {1: consent}}, complete=True))
    criteria = {n: {"IEORRES": "Y" if code.startswith("IN") else "N"} for n, code in
                enumerate(CRITERIA, start=1)}  # fmt: skip
    rows = {
        "IG.IE": {1: {"ELIGYN": "Y", "ENRLDAT": ENROLLED.isoformat()}},
        "IG.IE.IECRIT": criteria,
    }
    saved(factories.save(session, study, subject, "F.IE", rows, complete=True, by="investigator"))
    factories.move(session, study, subject, "enrolled", ENROLLED, dose_level=level,
                   phase="ESCALATION", by="investigator")  # fmt: skip
    return subject


def infuse(
    session: Session, study: Study, subject: Subject, level: str, dose: str, on: str
) -> None:
    """The infusion form recording `level` and the delivered `dose` (x10^6 cells) on `on`."""
    infusion = {
        "PRECHK": "Y", "DOSELVL": level, "EXDOSE": dose, "EXLOT": "LOT-1", "EXBAGN": "1",
        "EXVOL": "60.0", "THAWDTM": f"{on}T09:30", "EXSTDTM": f"{on}T10:00",
        "EXENDTM": f"{on}T10:15", "EXCOMP": "Y", "EXINTYN": "N", "PREMEDYN": "Y", "IRRYN": "N",
    }  # fmt: skip
    saved(factories.save(session, study, subject, "F.EX", {"IG.EX": {1: infusion}}, event="SE.D0"))


def saved(outcome: factories.write.Outcome) -> None:
    assert outcome.saved, outcome.evaluation.errors


def dm_arms(session: Session, study: Study, subject: Subject, out: Path) -> dict[str, object]:
    """The subject's DM arm variables, as the SDTM export writes them."""
    scope = ExportScope(study_id=study.id, kind=ScopeKind.SUBJECT, subject_id=pk(subject))
    specs = load_sdtm_specs(REPO / "exports", study)
    out.mkdir()
    datasets = write_sdtm(session, study, specs, out, scope, frozenset({"json"}))
    columns, (row,) = read_written(next(d for d in datasets if d.name == "DM"))
    names = ("ARMCD", "ARM", "ACTARMCD", "ACTARM", "ARMNRS", "ACTARMUD")
    written = dict(zip(columns, row, strict=True))
    return {name: written.get(name) for name in names}  # a variable null in every row is dropped


def test_the_arm_is_the_level_in_its_phase(zm001: Study) -> None:
    assert arm_of(zm001, "DL3", "ESCALATION", PHASES) == Arm(
        "DL3-ESC", "DL3 dose escalation: 1x10^8 CAR-T cells"
    )
    assert arm_of(zm001, "DL3", "EXPANSION", PHASES) == Arm(
        "DL3-EXP", "DL3 dose expansion: 1x10^8 CAR-T cells"
    )
    assert arm_of(zm001, "DL2", None, PHASES) == Arm("DL2", "DL2: 5x10^7 CAR-T cells")
    assert arm_of(zm001, "DL2", "EXPANSION", {}).code == "DL2-EXPANSION"


@pytest.mark.parametrize(
    ("percent", "dose", "level"),
    [
        (80.0, 20.0, "DL1"),  # the bounds are within tolerance
        (120.0, 30.0, "DL1"),
        (160.0, 40.0, "DL2"),  # 80% of DL2's target
        (79.9, 19.97, None),  # below every level
        (140.0, 35.0, None),  # between DL1 (140%) and DL2 (70%)
    ],
)
def test_the_delivered_dose_picks_the_level_within_tolerance(
    zm001: Study, percent: float, dose: float, level: str | None
) -> None:
    assert delivered_level(zm001, "DL1", percent, dose, 20) == level


def test_a_dose_within_tolerance_is_the_planned_arm_and_none_is_unplanned(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        planned, unplanned, not_yet = (enrolled(session, zm001, "DL1") for _ in range(3))
        infuse(session, zm001, planned, "DL1", "23.5", "2026-02-01")  # 94% of 25
        infuse(session, zm001, unplanned, "DL1", "37.0", "2026-02-09")  # 148% of 25, 74% of 50
        assert dm_arms(session, zm001, planned, tmp_path / "planned") == {
            "ARMCD": "DL1-ESC", "ARM": "DL1 dose escalation: 2.5x10^7 CAR-T cells",
            "ACTARMCD": "DL1-ESC", "ACTARM": "DL1 dose escalation: 2.5x10^7 CAR-T cells",
            "ARMNRS": None, "ACTARMUD": None,
        }  # fmt: skip
        assert dm_arms(session, zm001, unplanned, tmp_path / "unplanned") == {
            "ARMCD": "DL1-ESC", "ARM": "DL1 dose escalation: 2.5x10^7 CAR-T cells",
            "ACTARMCD": None, "ACTARM": None, "ARMNRS": "UNPLANNED TREATMENT",
            "ACTARMUD": "Infused at 148% of the DL1 target dose of 25 10^6 CAR-T cells",
        }  # fmt: skip
        assert dm_arms(session, zm001, not_yet, tmp_path / "not_yet") == {
            "ARMCD": "DL1-ESC", "ARM": "DL1 dose escalation: 2.5x10^7 CAR-T cells",
            "ACTARMCD": None, "ACTARM": None, "ARMNRS": "NOT TREATED", "ACTARMUD": None,
        }  # fmt: skip


def test_a_dose_within_another_levels_tolerance_is_that_levels_arm(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        factories.open_level(session, zm001, "DL2", date(2026, 1, 8))
        subject = enrolled(session, zm001, "DL2")
        infuse(session, zm001, subject, "DL2", "27.0", "2026-02-01")  # 54% of 50, 108% of 25
        assert dm_arms(session, zm001, subject, tmp_path / "dm") == {
            "ARMCD": "DL2-ESC", "ARM": "DL2 dose escalation: 5x10^7 CAR-T cells",
            "ACTARMCD": "DL1-ESC", "ACTARM": "DL1 dose escalation: 2.5x10^7 CAR-T cells",
            "ARMNRS": None, "ACTARMUD": None,
        }  # fmt: skip
