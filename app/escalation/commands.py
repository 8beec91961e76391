"""`trialdesk escalation ...`: the study's escalation rules run for the protocol team, without a
database (the levels and rules are read from the study folder). As in `app.cli`, what a
command needs is imported when it runs: `trialdesk --help` stays light."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from app.study.escalation_rules import EscalationRules

escalation_cli = typer.Typer(help="Dose escalation (3+3).", no_args_is_help=True)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def _study_rules(study_oid: str | None) -> tuple[tuple[str, ...], EscalationRules]:
    """The dose levels and escalation rules of the study asked for (or the only one the
    settings name); exits 1 saying what is wrong."""
    from app.config import get_settings
    from app.study.loader import load_study
    from app.study.problems import StudyDefinitionError

    folders = get_settings().studies
    if study_oid is None and len(folders) > 1:
        errors.print("several studies are served: give --study with the study's OID")
        raise typer.Exit(1)
    for folder in folders:
        try:
            study = load_study(folder.forms)
        except StudyDefinitionError as error:
            errors.print(str(error), markup=False, highlight=False)
            raise typer.Exit(1) from error
        if study_oid is not None and study.info.oid != study_oid:
            continue
        if study.escalation is None:
            errors.print(f"{study.info.oid} defines no dose escalation (escalation.yaml)")
            raise typer.Exit(1)
        return tuple(level.code for level in study.info.dose_levels), study.escalation
    errors.print(f"no study {study_oid}", markup=False)
    raise typer.Exit(1)


@escalation_cli.command("simulate")
def simulate_command(
    scenario: Annotated[
        str | None, typer.Argument(help="e.g. 'DL1: NNN; DL2: NTT; DL1: NNT'")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="a file of scenarios, one per line")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per scenario")] = False,
    study: Annotated[str | None, typer.Option("--study", help="OID of the study")] = None,
) -> None:
    """Run scenarios through the study's escalation rules: each subject's outcome as N (no
    DLT), T (DLT), X (not evaluable), P (in the window) or M (never infused); cohorts
    separated by spaces, levels by ';'. Prints the state after each subject and the
    decision."""
    from app.escalation.simulate import ScenarioError, simulate

    if (scenario is None) == (file is None):
        errors.print("give a scenario or --file, not both", markup=False)
        raise typer.Exit(2)
    lines = [scenario] if scenario is not None else _scenario_lines(file)
    levels, rules = _study_rules(study)
    for line in lines:
        try:
            result = simulate(rules, levels, line)
        except ScenarioError as error:
            errors.print(f"{line}: {error}", markup=False)
            raise typer.Exit(1) from error
        if as_json:
            console.print(json.dumps(result.as_json()), markup=False, highlight=False)
        else:
            console.print(result.as_text(), markup=False, highlight=False)


def _scenario_lines(file: Path | None) -> list[str]:
    """The scenarios of the file: one per line, blank lines and `#` comments left out."""
    assert file is not None
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        errors.print(f"cannot read {file}: {error.strerror}", markup=False)
        raise typer.Exit(1) from error
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@escalation_cli.command("characteristics")
def characteristics_command(
    true_rates: Annotated[
        str, typer.Option("--true-rates", help="true DLT rate per level, e.g. 0.05,0.1,0.25,0.4")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print them as JSON")] = False,
    study: Annotated[str | None, typer.Option("--study", help="OID of the study")] = None,
) -> None:
    """The design's operating characteristics under the true DLT rates, computed exactly over
    every outcome path of the study's rules: the probability of recommending each level (as
    MTD, or the top dose tolerated), of stopping with none, and the expected subjects and
    DLTs per level and in all."""
    from app.escalation.characteristics import operating_characteristics

    try:
        rates = tuple(float(rate) for rate in true_rates.split(","))
    except ValueError:
        errors.print(f"--true-rates '{true_rates}': give numbers separated by commas")
        raise typer.Exit(2) from None
    levels, rules = _study_rules(study)
    try:
        found = operating_characteristics(rules, levels, rates)
    except ValueError as error:
        errors.print(f"--true-rates: {error}", markup=False)
        raise typer.Exit(2) from error
    if as_json:
        console.print(json.dumps(found.as_json()), markup=False, highlight=False)
        return
    console.print(
        f"{'level':<6} {'true rate':>9} {'recommended':>12} {'opened':>8} {'subjects':>9} "
        f"{'DLTs':>6}",
        markup=False,
    )
    for level, rate in zip(levels, rates, strict=True):
        console.print(
            f"{level:<6} {rate:>9.2f} {found.recommended[level]:>12.3f} "
            f"{found.opened[level]:>8.3f} {found.subjects[level]:>9.2f} {found.dlts[level]:>6.2f}",
            markup=False, highlight=False,
        )  # fmt: skip
    console.print(
        f"stopped with no tolerable dose {found.stopped:.3f}; cap reached {found.capped:.3f}; "
        f"expected subjects {sum(found.subjects.values()):.2f}, DLTs "
        f"{sum(found.dlts.values()):.2f} ({found.paths} outcome paths)",
        markup=False, highlight=False,
    )  # fmt: skip
