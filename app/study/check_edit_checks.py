"""`trialdesk study check` for the edit checks of `checks/`: each is compiled and dry-run on
typed sample values of everything its vocabulary offers (`app.checks.scope`), so that a
wrong name, a type error or a check that can never fire is reported with file and line
before any data exist, not found at run time.
"""

from __future__ import annotations

from typing import Any

from app.expressions import Expression, ExpressionError, compile_expression, unknown_functions
from app.study.edit_checks import EditCheck, Severity
from app.study.loader import LOG_EVENT_OID, Study, find_item
from app.study.model import FormDef, ItemGroupDef
from app.study.problems import Loc, Problem, SourceFile
from app.study.samples import sample_value


def check_edit_checks(study: Study) -> list[Problem]:
    """Every problem of the study's edit checks."""
    problems: list[Problem] = []
    samples = {form.name: _form_sample(study, form) for form in study.forms.values()}
    positions: dict[str, int] = {}
    seen: set[str] = set()
    for check, display in zip(study.checks, study.check_files, strict=True):
        index = positions.get(display, 0)
        positions[display] = index + 1
        source = study.sources[display]
        loc: Loc = ("checks", index)
        if check.id in seen:
            problems.append(source.problem((*loc, "id"), f"duplicate check id {check.id}"))
            continue
        seen.add(check.id)
        problems += _check_one(study, samples, source, loc, check)
    return problems


def _check_one(
    study: Study, samples: dict[str, dict[str, Any]], source: SourceFile, loc: Loc, check: EditCheck
) -> list[Problem]:
    form = study.forms.get(check.form)
    if form is None:
        return [source.problem((*loc, "form"), f"{check.id}: unknown form {check.form}")]
    problems = [
        source.problem((*loc, "items", i), f"{check.id}: form {form.name} has no item {name}")
        for i, name in enumerate(check.items)
        if find_item(form, name) is None
    ]
    if problems:
        return problems
    if not _scheduled(study, form):
        message = f"{check.id} can never fire: form {form.name} is at no visit and is no log form"
        return [source.problem((*loc, "form"), message)]
    where = (*loc, "condition")
    try:
        expression = compile_expression(check.condition)
    except ExpressionError as error:
        return [source.problem(where, f"{check.id}: condition does not compile: {error}")]
    found = find_item(form, check.items[0])
    assert found is not None
    scope = _sample_scope(study, samples, form, found[0] if found[0].repeating else None)
    unknown = sorted(expression.variables - scope.keys())
    problems += [
        source.problem(where, f"{check.id}: unknown name {name} in condition {check.condition!r}")
        for name in unknown
    ]
    problems += [
        source.problem(where, f"{check.id}: unknown function {name}()")
        for name in sorted(unknown_functions(expression))
    ]
    own = {i.name for g in form.item_groups for i in g.items} | {g.name for g in form.item_groups}
    if check.severity == Severity.HARD and expression.variables.isdisjoint(own):
        problems.append(
            source.problem(
                (*loc, "severity"),
                f"{check.id} is hard but reads no item of {form.name}: a save of {form.name} "
                "can never satisfy it (make it soft, or run it on a form it reads)",
            )
        )
    if problems:
        return problems
    try:
        result = _dry_run(study, expression, scope, found[0] if found[0].repeating else None)
    except ExpressionError as error:
        text = str(error)
        if text.startswith("KeyError: "):
            text = f"it reads {text.removeprefix('KeyError: ')}, which does not exist there"
        return [source.problem(where, f"{check.id}: condition fails on sample values: {text}")]
    if not isinstance(result, bool):
        return [
            source.problem(where, f"{check.id}: condition must give true or false, gave {result!r}")
        ]
    return []


def _dry_run(
    study: Study, expression: Expression, scope: dict[str, Any], row_group: ItemGroupDef | None
) -> Any:
    """The condition's result on the sample values; for a check on the rows of a group with
    preset rows (lab tests), the first preset row it evaluates on (a lookup keyed by one
    test's code legitimately fails on another's); raises the first row's error if none."""
    presets = row_group.rows if row_group is not None and row_group.rows else ({},)
    read = {name: scope[name] for name in expression.variables if name in scope}
    first: ExpressionError | None = None
    for preset in presets:
        try:
            return expression.evaluate(read | {k: v for k, v in preset.items() if k in read})
        except ExpressionError as error:
            first = first or error
    assert first is not None
    raise first


def _scheduled(study: Study, form: FormDef) -> bool:
    return any(
        form.oid in study.forms_of_event(event)
        for event in [*(v.oid for v in study.schedule.visits), LOG_EVENT_OID]
    )


def _sample_scope(
    study: Study, forms: dict[str, dict[str, Any]], form: FormDef, row_group: ItemGroupDef | None
) -> dict[str, Any]:
    """Sample values of every name a check on `form` may read (`forms`: each form's sample
    map, by name)."""
    scope: dict[str, Any] = {name: value for name, value in forms.items() if name != form.name}
    scope.update({k: v for k, v in forms[form.name].items() if k not in ("status", "repeat")})
    if row_group is not None:
        scope.update(_row_sample(study, row_group))

    def visit(forms_at: list[str]) -> dict[str, Any]:
        return {
            "oid": "SE.X", "name": "Visit", "repeat": 1, "date": "2020-01-01", "day": 1.0,
            **{name: forms[name] for name in forms_at},
        }  # fmt: skip

    every_form = list(forms)
    forms_by_oid = {oid: f.name for oid, f in study.forms.items()}
    scope["visits"] = {
        v.oid.removeprefix("SE."): visit(
            [forms_by_oid[f.form] for f in v.forms if f.form in forms_by_oid]
        )
        for v in study.schedule.visits
    }
    scope["visit"] = scope["previous"] = scope["next"] = visit(every_form)
    scope["logs"] = {
        forms_by_oid[log.form]: [forms[forms_by_oid[log.form]]]
        for log in study.schedule.log_forms
        if log.form in forms_by_oid
    }
    scope["subject"] = {"key": "01-001", "status": "screening", "dose_level": "DL1", "phase": "P"}
    scope["anchors"] = {anchor.id: "2020-01-01" for anchor in study.schedule.anchors}
    scope["today"] = "2020-01-01"
    return scope


def _form_sample(study: Study, form: FormDef) -> dict[str, Any]:
    values: dict[str, Any] = {"status": "complete", "repeat": 1}
    for group in form.item_groups:
        row = _row_sample(study, group)
        if group.repeating:
            values[group.name] = [row]
        else:
            values.update(row)
    return values


def _row_sample(study: Study, group: ItemGroupDef) -> dict[str, Any]:
    codelists = study.codelists
    return {i.name: sample_value(i, codelists.get(i.codelist or "")) for i in group.items}
