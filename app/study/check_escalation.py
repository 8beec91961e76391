"""`trialdesk study check` for `escalation.yaml`: the rules need dose levels to escalate over,
the board cannot expand more levels than the study has, and the casebook part names the
study's phases, its infusion form and items, and facts that compile and read known forms."""

from __future__ import annotations

from app.expressions import ExpressionError, compile_expression, unknown_functions
from app.study.escalation_rules import EscalationCasebook
from app.study.loader import Study, find_item
from app.study.problems import Problem, SourceFile


def check_escalation(study: Study) -> list[Problem]:
    """Every problem of the study's escalation rules against its dose levels (none without
    rules)."""
    rules = study.escalation
    if rules is None:
        return []
    source = next(s for display, s in study.sources.items() if display.endswith("escalation.yaml"))
    levels = len(study.info.dose_levels)
    if levels == 0:
        return [source.problem((), "a dose escalation needs the dose levels of study.yaml")]
    problems = []
    if rules.expansion_levels > levels:
        problems.append(
            source.problem(
                ("expansion_levels",),
                f"expansion_levels is {rules.expansion_levels}, but the study has {levels} "
                "dose levels",
            )
        )
    if rules.casebook is not None:
        problems += _check_casebook(study, rules.casebook, source)
    return problems


def _check_casebook(
    study: Study, casebook: EscalationCasebook, source: SourceFile
) -> list[Problem]:
    problems = []
    phases = {phase.code for phase in study.info.phases}
    for field in ("escalation_phase", "expansion_phase"):
        code = getattr(casebook, field)
        if code not in phases:
            known = ", ".join(sorted(phases)) or "none"
            problems.append(
                source.problem(
                    ("casebook", field), f"{code} is not a phase of study.yaml (phases: {known})"
                )
            )
    form = study.forms.get(casebook.infusion.form)
    if form is None:
        problems.append(
            source.problem(("casebook", "infusion", "form"), f"no form {casebook.infusion.form}")
        )
    else:
        for field in ("date", "level"):
            name = getattr(casebook.infusion, field)
            found = find_item(form, name)
            if found is None or found[0].repeating:
                problems.append(
                    source.problem(
                        ("casebook", "infusion", field),
                        f"{form.oid} has no item {name} outside its repeating groups",
                    )
                )
    forms = {f.name for f in study.forms.values()}
    for field, text in casebook.subject_facts.model_dump().items():
        loc = ("casebook", "subject_facts", field)
        try:
            expression = compile_expression(text)
        except ExpressionError as error:
            problems.append(source.problem(loc, f"the expression does not compile: {error}"))
            continue
        unknown = unknown_functions(expression)
        if unknown:
            problems.append(source.problem(loc, f"unknown functions: {', '.join(sorted(unknown))}"))
        names = {n for n in expression.variables if n.isupper() and n not in forms}
        if names:
            problems.append(source.problem(loc, f"no form named {', '.join(sorted(names))}"))
    return problems
