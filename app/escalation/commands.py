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
    from app.escalation.rules import EscalationRules

escalation_cli = typer.Typer(help="Dose escalation (3+3).", no_args_is_help=True)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def _study_rules(study_oid: str | None) -> tuple[tuple[str, ...], EscalationRules]:
    """The dose levels and rules of the study asked for (or the only one the settings
    name); exits 1 saying what is wrong."""
    from pydantic import ValidationError

    from app.config import get_settings
    from app.escalation.rules import RULES_FILE, load_rules
    from app.study.loader import load_study

    folders = get_settings().studies
    for folder in folders:
        study = load_study(folder.forms)
        if study_oid is None or study.info.oid == study_oid:
            if study_oid is None and len(folders) > 1:
                break
            try:
                rules = load_rules(folder.forms)
            except ValidationError as error:
                errors.print(f"{folder.forms / RULES_FILE}: {error}", markup=False)
                raise typer.Exit(1) from error
            return tuple(level.code for level in study.info.dose_levels), rules
    asked = f"no study {study_oid}" if study_oid else "several studies are served"
    errors.print(f"{asked}: give --study with the study's OID", markup=False)
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
