"""Operating characteristics computed exactly over every outcome path, checked against the
closed formulas of a 3+3 level: under our rules (as in the classic rule), a level with true
DLT rate p is cleared, and the next level opened, with probability
    (1-p)^3 + 3p(1-p)^2 (1-p)^3
(0 DLTs in 3, or 1 in 3 then 0 in 3 more); and a top level confirmed with 6 is tolerated with
probability (1-p)^3 [(1-p)^3 + 3p(1-p)^2] + 3p(1-p)^2 (1-p)^3."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.escalation.characteristics import operating_characteristics
from tests.escalation.test_scenarios import LEVELS, RULES


def escalates(p: float) -> float:
    return (1 - p) ** 3 + 3 * p * (1 - p) ** 2 * (1 - p) ** 3


def confirmed_top(p: float) -> float:
    return (1 - p) ** 3 * ((1 - p) ** 3 + 3 * p * (1 - p) ** 2) + 3 * p * (1 - p) ** 2 * (
        1 - p
    ) ** 3


@pytest.mark.parametrize("p", [0.0, 0.05, 0.2, 1 / 3, 0.5, 0.9])
def test_a_level_is_cleared_with_the_closed_formulas_probability(p: float) -> None:
    found = operating_characteristics(RULES, LEVELS, (p, 0.1, 0.2, 0.3))
    assert found.opened["DL2"] == pytest.approx(escalates(p))
    top = operating_characteristics(RULES, ("A",), (p,))
    assert top.recommended["A"] == pytest.approx(confirmed_top(p))
    assert top.stopped == pytest.approx(1 - confirmed_top(p))
    classic = RULES.model_copy(update={"confirm_top_dose": False})
    assert operating_characteristics(classic, ("A",), (p,)).recommended["A"] == pytest.approx(
        escalates(p)
    )


def test_every_path_adds_up_to_certainty_and_expectations_are_consistent() -> None:
    found = operating_characteristics(RULES, LEVELS, (0.05, 0.1, 0.25, 0.4))
    total = sum(found.recommended.values()) + found.stopped + found.capped
    assert total == pytest.approx(1.0)
    for level, rate in zip(LEVELS, found.true_rates, strict=True):
        assert found.dlts[level] == pytest.approx(rate * found.subjects[level])
    assert found.opened["DL1"] == pytest.approx(1.0)
    assert 0 < found.opened["DL4"] < found.opened["DL3"] < found.opened["DL2"]
    assert found.subjects["DL1"] >= 3
    safe = operating_characteristics(RULES, LEVELS, (0.0, 0.0, 0.0, 0.0))
    assert safe.recommended["DL4"] == 1.0 and sum(safe.subjects.values()) == 15  # 3+3+3+6
    toxic = operating_characteristics(RULES, LEVELS, (1.0, 1.0, 1.0, 1.0))
    assert toxic.stopped == 1.0 and toxic.subjects["DL1"] == 3


def test_the_command_line_prints_the_characteristics() -> None:
    runner = CliRunner()
    done = runner.invoke(
        cli, ["escalation", "characteristics", "--true-rates", "0.05,0.1,0.25,0.4", "--json"]
    )
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout)
    assert printed["opened"]["DL2"] == pytest.approx(escalates(0.05))
    assert printed["expected_subjects"] == pytest.approx(sum(printed["subjects"].values()))
    table = runner.invoke(
        cli, ["escalation", "characteristics", "--true-rates", "0.05,0.1,0.25,0.4"]
    )
    assert table.exit_code == 0 and "stopped with no tolerable dose" in table.stdout
    wrong = runner.invoke(cli, ["escalation", "characteristics", "--true-rates", "0.1,0.2"])
    assert wrong.exit_code == 2
    assert "give 4 true DLT rates, one per level (DL1, DL2, DL3, DL4)" in wrong.output
