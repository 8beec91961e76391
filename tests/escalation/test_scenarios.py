"""The build spec's §2.5 scenarios run through the engine, as `trialdesk escalation simulate`
runs them, with the spec's expected decision for each; and the engine's branches the
scenarios leave out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.escalation.engine import Escalation, LevelStatus, Outcome, State
from app.escalation.simulate import ScenarioError, simulate
from app.study.escalation_rules import EscalationRules
from app.study.loader import load_study, study_problems
from tests.conftest import FORMS

LEVELS = ("DL1", "DL2", "DL3", "DL4")
ZM001_RULES = load_study(FORMS).escalation
assert ZM001_RULES is not None
RULES = ZM001_RULES
SCENARIOS = Path(__file__).with_name("spec_scenarios.txt")

EXPECTED: dict[str, tuple[str, State, str | None, dict[str, LevelStatus]]] = {
    # scenario: (spec row, state, its level, level statuses the spec names)
    "DL1: NNN": ("1", State.ESCALATING, "DL2", {"DL1": LevelStatus.CLEARED, "DL2": LevelStatus.OPEN_A}),
    "DL1: NNT": ("2", State.ESCALATING, "DL1", {"DL1": LevelStatus.OPEN_B}),
    "DL1: NNT NNN": ("3", State.ESCALATING, "DL2", {"DL1": LevelStatus.CLEARED}),
    "DL1: NNT NT": ("4", State.STOPPED_NO_TOLERABLE_DOSE, None, {"DL1": LevelStatus.EXCEEDED}),
    "DL1: TTP": ("5", State.STOPPED_NO_TOLERABLE_DOSE, None, {"DL1": LevelStatus.EXCEEDED}),
    "DL1: NNN; DL2: NNN; DL3: NNN; DL4: NNN": ("6", State.ESCALATING, "DL4", {"DL4": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: NNN; DL3: NNN; DL4: NNN NNN": ("7", State.TOP_DOSE_TOLERATED, "DL4", {"DL4": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NNN; DL3: NNN; DL4: NNT NNN": ("8", State.TOP_DOSE_TOLERATED, "DL4", {"DL4": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NNN; DL3: NNN; DL4: NNT NTP": ("9", State.DEESCALATING, "DL3", {"DL4": LevelStatus.EXCEEDED, "DL3": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: NNN; DL3: TTN": ("10", State.DEESCALATING, "DL2", {"DL3": LevelStatus.EXCEEDED, "DL2": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: NNN; DL3: TTN; DL2: NNN": ("10", State.MTD_DECLARED, "DL2", {"DL2": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NNN; DL3: TTN; DL2: NTT": ("11", State.DEESCALATING, "DL1", {"DL2": LevelStatus.EXCEEDED, "DL1": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: NNN; DL3: TTN; DL2: NTT; DL1: NNN": ("11", State.MTD_DECLARED, "DL1", {"DL1": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NNT NNN; DL3: NTT": ("12", State.MTD_DECLARED, "DL2", {"DL3": LevelStatus.EXCEEDED, "DL2": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NXN": ("13", State.ESCALATING, "DL2", {"DL2": LevelStatus.OPEN_A}),
    "DL1: NNN; DL2: NXNN": ("13", State.ESCALATING, "DL3", {"DL2": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NTN": ("14", State.ESCALATING, "DL2", {"DL2": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: MNNN": ("15", State.ESCALATING, "DL3", {"DL2": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: P; DL1: T": ("16", State.PAUSED_REVIEW, "DL1", {"DL1": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: P; DL1: T NN": ("16", State.ESCALATING, "DL2", {"DL1": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: P; DL1: T T": ("16", State.STOPPED_NO_TOLERABLE_DOSE, None, {"DL1": LevelStatus.EXCEEDED}),
    "DL1: NNN; DL2: NNN; DL3: NNP": ("20", State.ESCALATING, "DL3", {"DL3": LevelStatus.OPEN_A}),
    "DL1: NNN; DL2: NNN; DL3: NNNP": ("21", State.ESCALATING, "DL3", {"DL3": LevelStatus.OPEN_A}),
    "DL1: NNN; DL2: NNN; DL3: NNNT": ("21", State.ESCALATING, "DL3", {"DL3": LevelStatus.OPEN_B}),
    "DL1: NNN; DL2: NNN; DL3: NNNN": ("21", State.ESCALATING, "DL4", {"DL3": LevelStatus.CLEARED}),
    "DL1: NNN; DL2: NTN XXNNN": ("22", State.ESCALATING, "DL3", {"DL2": LevelStatus.CLEARED}),
    "DL1: TTT": ("27", State.STOPPED_NO_TOLERABLE_DOSE, None, {"DL1": LevelStatus.EXCEEDED}),
    "DL1: NXXNN": ("28", State.ESCALATING, "DL2", {"DL1": LevelStatus.CLEARED}),
}  # fmt: skip


def scenario_lines() -> list[str]:
    lines = SCENARIOS.read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_the_scenario_file_holds_every_expected_scenario() -> None:
    assert scenario_lines() == list(EXPECTED)


@pytest.mark.parametrize(
    "scenario", list(EXPECTED), ids=[f"#{v[0]} {k}" for k, v in EXPECTED.items()]
)
def test_each_scenario_ends_in_the_decision_the_spec_expects(scenario: str) -> None:
    _row, state, level, statuses = EXPECTED[scenario]
    result = simulate(RULES, LEVELS, scenario)
    assert (result.decision.state, result.decision.level) == (state, level), result.decision.reason
    for at, status in statuses.items():
        assert result.escalation.counts[at].status == status, at


def test_the_command_line_runs_the_scenario_file_as_json() -> None:
    done = CliRunner().invoke(cli, ["escalation", "simulate", "--file", str(SCENARIOS), "--json"])
    assert done.exit_code == 0, done.output
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["scenario"] for p in printed] == list(EXPECTED)
    for result in printed:
        _row, state, level, _ = EXPECTED[result["scenario"]]
        assert (result["state"], result["level"]) == (state, level)
    five = printed[list(EXPECTED).index("DL1: TTP")]
    assert five["levels"]["DL1"] == {
        "status": "EXCEEDED", "infused": 3, "evaluable": 2, "dlt": 2, "pending": 1,
        "not_evaluable": 0,
    }  # fmt: skip
    assert [s["outcome"] for s in five["steps"]] == ["T", "T", "P"]
    assert "the study stops with no tolerable dose" in five["reason"]


def test_the_command_line_prints_each_step_and_names_a_wrong_letter() -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["escalation", "simulate", "DL1: NNT NNN"])
    assert done.exit_code == 0, done.output
    assert "decision: ESCALATING DL2: DL1: 1 DLT in 6 evaluable: DL1 is cleared" in done.stdout
    assert len([line for line in done.stdout.splitlines() if "->" in line]) == 6
    wrong = runner.invoke(cli, ["escalation", "simulate", "DL1: NNQ"])
    assert wrong.exit_code == 1
    assert "'Q' at DL1 is not an outcome: use N, T, X, P or M" in wrong.output
    with pytest.raises(ScenarioError, match="unknown dose level 'DL9'"):
        simulate(RULES, LEVELS, "DL9: NNN")


def test_without_top_dose_confirmation_3_at_the_top_level_end_the_escalation() -> None:
    rules = RULES.model_copy(update={"confirm_top_dose": False})
    result = simulate(rules, LEVELS, "DL1: NNN; DL2: NNN; DL3: NNN; DL4: NNN")  # spec row 6
    assert result.decision.state == State.TOP_DOSE_TOLERATED


def test_enrolment_closes_at_the_cap_of_infused_subjects() -> None:
    thirty = "DL1: " + " ".join(["NNN"] * 5) + "; DL2: " + " ".join(["NNN"] * 5)  # spec row 26
    result = simulate(RULES, LEVELS, thirty)
    assert result.decision.state == State.ENROLLMENT_CLOSED
    assert "cap of 30" in result.decision.reason


def test_a_second_study_with_other_rules_needs_no_code() -> None:
    """Cohorts of 2 then 4, a 21-day window, no top-dose confirmation, three levels."""
    rules = EscalationRules(min_cohort=2, max_cohort=4, window_days=21, confirm_top_dose=False)
    levels = ("A", "B", "C")
    assert simulate(rules, levels, "A: NN").decision.level == "B"
    assert simulate(rules, levels, "A: NT").escalation.counts["A"].status == LevelStatus.OPEN_B
    assert simulate(rules, levels, "A: NT NN").decision.level == "B"  # 1 in 4
    assert simulate(rules, levels, "A: NN; B: NN; C: NN").decision.state == State.TOP_DOSE_TOLERATED


def test_a_subject_recorded_again_counts_once_with_the_latest_outcome() -> None:
    escalation = Escalation(RULES, LEVELS)
    for subject in ("1", "2", "3"):
        escalation.record(subject, "DL1", Outcome.PENDING)
    assert escalation.counts["DL1"].pending == 3
    for subject in ("1", "2", "3"):
        escalation.record(subject, "DL1", Outcome.NO_DLT)
    counts = escalation.counts["DL1"]
    assert (counts.infused, counts.evaluable, counts.pending) == (3, 3, 0)
    assert escalation.current().level == "DL2"
    with pytest.raises(ValueError, match="unknown dose level DL7"):
        escalation.record("4", "DL7", Outcome.NO_DLT)


def test_the_study_check_reports_escalation_rules_with_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "forms"
    shutil.copytree(FORMS, folder)
    (folder / "escalation.yaml").write_text("min_cohort: 3\nmax_cohort: 2\nexpansion_levels: 5\n")
    problems = study_problems(folder)
    assert [(p.file, p.line) for p in problems] == [("forms/escalation.yaml", 1)]
    assert "max_cohort must be larger than min_cohort" in problems[0].message
    (folder / "escalation.yaml").write_text("min_cohort: 3\nexpansion_levels: 5\n")
    [problem] = study_problems(folder)
    assert (problem.file, problem.line) == ("forms/escalation.yaml", 2)
    assert problem.message == "expansion_levels is 5, but the study has 4 dose levels"
    (folder / "escalation.yaml").write_text("window_day: 21\n")
    [problem] = study_problems(folder)
    assert "window_day" in str(problem)


def test_after_a_stop_later_outcomes_are_counted_but_change_no_decision() -> None:
    escalation = simulate(RULES, LEVELS, "DL1: NNN; DL2: NNN; DL1: TT").escalation
    assert escalation.current().state == State.STOPPED_NO_TOLERABLE_DOSE
    escalation.record("late", "DL2", Outcome.DLT)  # a late DLT at cleared DL2
    assert escalation.current().state == State.STOPPED_NO_TOLERABLE_DOSE
    assert escalation.counts["DL2"].dlt == 1
