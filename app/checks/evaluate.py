"""Running edit checks on one subject's casebook: the same code on save and in batch.

A check runs on every stored instance of its form that is not marked not done (on every row,
when its first item is in a repeating group). Its condition is true when the data are
consistent: false is a finding. A condition that cannot be evaluated because a value it
reads is missing (a comparison with null) is no finding: whether an answer is required is
the form's business, and a check speaks only of what is there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from app.checks.scope import SubjectScope
from app.checks.subject_data import FormInstance, SubjectData
from app.crf.changes import FormRef
from app.expressions import Expression, ExpressionError, compile_expression
from app.study.edit_checks import EditCheck, Severity
from app.study.loader import Study, find_item
from app.study.model import FormDef, ItemDef, ItemGroupDef

_NAME = re.compile(r"\b[A-Z][A-Z0-9_]*\b")
_WORD = re.compile(r"[A-Za-z_]\w*")
_TIMING = frozenset({"visit", "previous", "next", "visits"})
"""Names that change when a visit is dated (an anchor's date is an item: a form save)."""


@dataclass(frozen=True)
class CompiledCheck:
    """A check with its compiled condition, where it runs and what it reads."""

    check: EditCheck
    expression: Expression
    form: FormDef
    group: ItemGroupDef
    """The group of the check's first item: the check runs on each of its rows if it repeats."""
    item: ItemDef
    forms_read: frozenset[str]
    """Names of the forms whose items the condition reads, its own included."""
    visits_read: frozenset[str] | None
    """The visits it reads as `visits.NAME`; None when it reads the map otherwise (a macro
    over its keys): then every visit."""
    reads_timing: bool
    """Reads visit dates, anchors or study days: re-run when a visit is dated."""
    reads_subject: bool
    row_items: tuple[ItemDef, ...]
    """The items of its row it reads (none when its group does not repeat)."""
    words: frozenset[str]
    """Every name the condition mentions, in string literals too: the maps it is given
    hold only these items (`forms/README.md`)."""

    @property
    def per_row(self) -> bool:
        return self.group.repeating

    @property
    def row_names(self) -> frozenset[str]:
        return frozenset(item.name for item in self.row_items)


@dataclass(frozen=True)
class CheckResult:
    """One evaluation of a check: where, and whether the data are consistent."""

    check: EditCheck
    ref: FormRef
    group_oid: str
    group_repeat: int
    item_oid: str
    item_name: str
    passed: bool

    @property
    def hard(self) -> bool:
        return self.check.severity == Severity.HARD


def compile_check(study: Study, check: EditCheck) -> CompiledCheck:
    """Compile one check; raises ExpressionError or KeyError for a check `study check` would
    refuse (unknown form or item)."""
    form = study.forms[check.form]
    found = find_item(form, check.items[0])
    if found is None:
        raise KeyError(f"{check.form} has no item {check.items[0]}")
    expression = compile_expression(check.condition)
    names = {form.name for form in study.forms.values()}
    read = set(_NAME.findall(check.condition)) & names
    if "anchors" in expression.variables:  # an anchor date is an item of the form it names
        read |= {anchor.source.split(".")[0] for anchor in study.schedule.anchors}
    return CompiledCheck(
        check=check, expression=expression, form=form, group=found[0], item=found[1],
        forms_read=frozenset(read | {form.name}), visits_read=_visits_read(study, check.condition),
        reads_timing=_reads_timing(expression, check.condition),
        reads_subject="subject" in expression.variables,
        words=frozenset(_WORD.findall(check.condition)),
        row_items=tuple(i for i in found[0].items if i.name in expression.variables)
        if found[0].repeating
        else (),
    )  # fmt: skip


_VISITS = re.compile(r"\bvisits\b(?:\s*\.\s*(\w+))?")


def _visits_read(study: Study, condition: str) -> frozenset[str] | None:
    """The visit names `condition` reads as `visits.NAME` (CEL converts every value it is
    given on each evaluation: a check reading the screening visit gets only that one)."""
    names = {visit.oid.removeprefix("SE.") for visit in study.schedule.visits}
    read = set()
    for match in _VISITS.finditer(condition):
        if match[1] not in names:
            return None
        read.add(match[1])
    return frozenset(read)


_DATE_OF_A_VISIT = re.compile(r"\.\s*(?:date|day)\b")


def _reads_timing(expression: Expression, condition: str) -> bool:
    """Whether dating a visit can change the condition's result: it reads the neighbours of
    its visit (which are so by date) or a visit's `date` or `day`. Anchors are items of forms
    (`forms_read` has their forms), so dating a visit leaves them as they are."""
    names = expression.variables
    if names & {"previous", "next"}:
        return True
    return bool(names & {"visit", "visits"}) and _DATE_OF_A_VISIT.search(condition) is not None


_COMPILED: dict[str, tuple[CompiledCheck, ...]] = {}


def compiled_checks(study: Study) -> tuple[CompiledCheck, ...]:
    """Every check of the study, compiled once per definition (by its digest)."""
    if study.digest not in _COMPILED:
        _COMPILED[study.digest] = tuple(compile_check(study, check) for check in study.checks)
    return _COMPILED[study.digest]


def checks_reading(
    study: Study, form_names: Iterable[str], *, timing: bool = False, subject: bool = False
) -> list[CompiledCheck]:
    """The checks to run after a change to `form_names` (or to visit dates, or the subject's
    status): those that run on one of the forms or read it, batch-only checks left out."""
    changed = set(form_names)
    return [
        c
        for c in compiled_checks(study)
        if not c.check.batch_only
        and (c.forms_read & changed or (timing and c.reads_timing) or (subject and c.reads_subject))
    ]


_ACROSS_INSTANCES = frozenset({"visits", "logs", "previous", "next", "visit"})
"""Names through which a check on one instance reads other visits or instances."""


def run_checks(
    study: Study,
    data: SubjectData,
    checks: Iterable[CompiledCheck],
    today: date,
    changed: Iterable[FormRef] | None = None,
    dated_visit: tuple[str, int] | None = None,
) -> list[CheckResult]:
    """Evaluate `checks` on the subject's casebook, in check then casebook order. With
    `changed` (the form instances a save writes), a check that reads no other form than its
    own and nothing across instances runs only on the changed instances of its form: its
    other instances read nothing that changed. With `dated_visit` (a visit whose date
    changes), a check that reads no date but its own visit's runs only at that visit."""
    scope = SubjectScope(study, data, today)
    refs = set(changed) if changed is not None else None
    names = {ref.form_oid for ref in refs} if refs is not None else set()
    changed_names = {study.forms[oid].name for oid in names if oid in study.forms}
    results = []
    for compiled in checks:
        local = refs is not None and not (
            (compiled.forms_read - {compiled.form.name}) & changed_names
            or compiled.expression.variables & _ACROSS_INSTANCES
        )
        own_visit = dated_visit is not None and compiled.expression.variables & _TIMING == {"visit"}
        for instance in data.instances(compiled.form.oid):
            if instance.not_done or (local and refs is not None and instance.ref not in refs):
                continue
            where = (instance.ref.event_oid, instance.ref.event_repeat)
            if own_visit and where != dated_visit:
                continue
            results += _evaluate(scope, compiled, instance)
    return results


def _evaluate(
    scope: SubjectScope, compiled: CompiledCheck, instance: FormInstance
) -> list[CheckResult]:
    """The check's results on `instance`: one, or one per row of its group. What the rows
    share (the form's other rows, other forms) is converted to CEL once per instance."""
    expression = compiled.expression
    shared = scope.shared(
        expression.variables - compiled.row_names, instance, compiled.forms_read,
        compiled.visits_read, compiled.words,
    )  # fmt: skip
    if not compiled.per_row:
        return [_result(compiled, instance, 1, _consistent(expression.evaluate, shared))]
    bound = expression.bind(shared)
    return [
        _result(compiled, instance, repeat, _consistent(bound.evaluate, row))
        for repeat, row in _rows(scope, compiled, instance)
    ]


def _rows(
    scope: SubjectScope, compiled: CompiledCheck, instance: FormInstance
) -> list[tuple[int, dict[str, Any]]]:
    group = compiled.group
    return [
        (repeat, scope.row(group, instance, repeat, compiled.row_items))
        for repeat in sorted(instance.rows.get(group.oid, {}))
    ]


def _consistent(evaluate: Callable[[Mapping[str, Any]], Any], variables: Mapping[str, Any]) -> bool:
    try:
        return evaluate(variables) is not False
    except ExpressionError:
        return True  # a value it reads is missing: nothing to say (module docstring)


def _result(
    compiled: CompiledCheck, instance: FormInstance, repeat: int, consistent: bool
) -> CheckResult:
    return CheckResult(
        compiled.check, instance.ref, compiled.group.oid, repeat, compiled.item.oid,
        compiled.item.name, consistent,
    )  # fmt: skip
