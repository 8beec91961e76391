"""Whole-study checks of a parsed definition: references between files, OIDs, windows, expressions.

Every check appends a Problem pointing at the file and line of the element at fault; nothing
stops at the first problem, so an author sees everything that is wrong in one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from app.expressions import ExpressionError, compile_expression, unknown_functions
from app.study.check_edit_checks import check_edit_checks
from app.study.check_escalation import check_escalation
from app.study.check_sdv import check_sdv_plan
from app.study.check_signatures import check_signatures
from app.study.derivations import DerivationCycle, derivation_order
from app.study.loader import Study, find_item
from app.study.model import CodeList, DataType, FormDef, ItemDef, ItemGroupDef
from app.study.problems import Loc, Problem, SourceFile
from app.study.samples import plain_items, sample_value

CROSS_FORM_REFERENCE = re.compile(r"\b([A-Z][A-Z0-9_]*)\.([A-Z][A-Z0-9_]*)\b")


def check_study(study: Study) -> list[Problem]:
    """Every cross-file problem of a parsed study; empty when the study is usable."""
    checker = _Checker(study)
    checker.check_oids()
    checker.check_study_info()
    checker.check_codelists()
    checker.check_schedule()
    checker.check_subject_path()
    for form in study.forms.values():
        checker.check_form(form)
    return (
        checker.problems + check_edit_checks(study) + check_sdv_plan(study)
        + check_signatures(study) + check_escalation(study)
    )  # fmt: skip


class _Checker:
    def __init__(self, study: Study) -> None:
        self.study = study
        self.problems: list[Problem] = []
        self.study_file = study.sources[_key(study, "study.yaml")]
        self.schedule_file = study.sources[_key(study, "schedule.yaml")]

    def add(self, source: SourceFile, loc: Loc, message: str) -> None:
        self.problems.append(source.problem(loc, message))

    def form_file(self, form: FormDef) -> SourceFile:
        return self.study.sources[self.study.form_files[form.oid]]

    # -- identifiers -------------------------------------------------------------------------

    def _oid_sites(self) -> Iterator[tuple[str, SourceFile, Loc, str]]:
        """Every OID declared in the study: (oid, file, location, what it names)."""
        study = self.study
        for i, visit in enumerate(study.schedule.visits):
            yield visit.oid, self.schedule_file, ("visits", i, "oid"), f"visit {visit.name}"
        for i, period in enumerate(study.schedule.periods):
            yield period.oid, self.schedule_file, ("periods", i, "oid"), f"period {period.name}"
        for form in study.forms.values():
            source = self.form_file(form)
            yield form.oid, source, ("oid",), f"form {form.name}"
            for g, group in enumerate(form.item_groups):
                yield group.oid, source, ("item_groups", g, "oid"), f"item group {group.name}"
                for i, item in enumerate(group.items):
                    loc = ("item_groups", g, "items", i, "oid")
                    yield item.oid, source, loc, f"item {form.name}.{item.name}"
        for key, what in (("codelists", "codelist"), ("units", "unit")):
            for source in self._files_under(key):
                for index, oid in _declared_oids(source, key):
                    yield oid, source, (key, index, "oid"), f"{what} {oid}"

    def _files_under(self, folder: str) -> list[SourceFile]:
        return [s for d, s in self.study.sources.items() if f"/{folder}/" in f"/{d}"]

    def check_oids(self) -> None:
        seen: dict[str, str] = {}
        for oid, source, loc, what in self._oid_sites():
            if oid in seen:
                self.add(source, loc, f"duplicate OID {oid} ({what}): already used by {seen[oid]}")
            seen.setdefault(oid, what)

    # -- study.yaml -------------------------------------------------------------------------

    def check_study_info(self) -> None:
        codes = [level.code for level in self.study.info.dose_levels]
        for i, code in enumerate(codes):
            if code in codes[:i]:
                self.add(
                    self.study_file, ("dose_levels", i, "code"), f"duplicate dose level {code}"
                )
        design = self.study.info.design
        periods = {period.oid for period in self.study.schedule.periods}
        if design and design.arm_assignment and design.arm_assignment.period not in periods:
            loc = ("design", "arm_assignment", "period")
            self.add(self.study_file, loc, f"unknown period {design.arm_assignment.period}")

    def check_codelists(self) -> None:
        for source in self._files_under("codelists"):
            for index, oid in _declared_oids(source, "codelists"):
                codelist = self.study.codelists.get(oid)
                if codelist is not None:  # None: left out for its schema errors
                    self._check_codelist(source, index, codelist)

    def _check_codelist(self, source: SourceFile, index: int, codelist: CodeList) -> None:
        codes = codelist.codes
        for i, code in enumerate(codes):
            loc = ("codelists", index, "items", i, "code")
            if code in codes[:i]:
                self.add(source, loc, f"duplicate code {code!r} in codelist {codelist.oid}")
            if codelist.data_type == "integer" and not re.fullmatch(r"-?\d+", code):
                self.add(source, loc, f"code {code!r} is not an integer (codelist is integer)")

    # -- schedule.yaml ----------------------------------------------------------------------

    def check_schedule(self) -> None:
        schedule, source = self.study.schedule, self.schedule_file
        anchors = {anchor.id for anchor in schedule.anchors}
        periods = {period.oid for period in schedule.periods}
        for i, anchor in enumerate(schedule.anchors):
            self._check_anchor_source(("anchors", i, "source"), anchor.source)
        if schedule.study_day_anchor is not None and schedule.study_day_anchor not in anchors:
            self.add(source, ("study_day_anchor",), f"unknown anchor {schedule.study_day_anchor}")
        for i, period in enumerate(schedule.periods):
            start = period.element.start_anchor if period.element else None
            if start is not None and start not in anchors:
                self.add(
                    source, ("periods", i, "element", "start_anchor"), f"unknown anchor {start}"
                )
        visitnums: dict[float, str] = {}
        for i, visit in enumerate(schedule.visits):
            loc: Loc = ("visits", i)
            if visit.period not in periods:
                self.add(source, (*loc, "period"), f"unknown period {visit.period}")
            if visit.anchor is not None and visit.anchor not in anchors:
                self.add(source, (*loc, "anchor"), f"unknown anchor {visit.anchor}")
            if visit.visitnum in visitnums:
                self.add(
                    source,
                    (*loc, "visitnum"),
                    f"VISITNUM {visit.visitnum:g} is also used by {visitnums[visit.visitnum]}",
                )
            visitnums.setdefault(visit.visitnum, visit.oid)
            if visit.window is not None:
                window = visit.window
                if window.earliest > window.latest:
                    self.add(
                        source,
                        (*loc, "window"),
                        f"inverted window: from day {window.earliest} is after to day "
                        f"{window.latest}",
                    )
                elif visit.day is not None and not window.earliest <= visit.day <= window.latest:
                    self.add(
                        source,
                        (*loc, "day"),
                        f"nominal day {visit.day} lies outside its window "
                        f"{window.earliest}..{window.latest}",
                    )
            for j, entry in enumerate(visit.forms):
                if entry.form not in self.study.forms:
                    self.add(
                        source,
                        (*loc, "forms", j),
                        f"form {entry.form} is scheduled at {visit.oid} but not defined in ecrf/",
                    )
        for i, log in enumerate(schedule.log_forms):
            if log.form not in self.study.forms:
                self.add(source, ("log_forms", i, "form"), f"log form {log.form} is not defined")

    def check_subject_path(self) -> None:
        path, source = (
            self.study.subject_path,
            self.study.sources[_key(self.study, "subject_path.yaml")],
        )
        codes = [status.code for status in path.statuses]
        for i, code in enumerate(codes):
            if code in codes[:i]:
                self.add(source, ("statuses", i, "code"), f"duplicate status {code}")
        if path.initial not in codes:
            self.add(source, ("initial",), f"initial status {path.initial} is not a status")
        finals = {status.code for status in path.statuses if status.final}
        levels, phases = self.study.info.dose_levels, self.study.info.phases
        subject = {
            "subject": {
                "dose_level": levels[0].code if levels else None,
                "phase": phases[0].code if phases else None,
            }
        }
        for t, transition in enumerate(path.transitions):
            for s_index, status in enumerate(transition.sources):
                if status not in codes:
                    self.add(
                        source, ("transitions", t, "from", s_index), f"unknown status {status}"
                    )
                elif status in finals:
                    self.add(source, ("transitions", t, "from", s_index), f"{status} is final")
            if transition.to not in codes:
                self.add(source, ("transitions", t, "to"), f"unknown status {transition.to}")
            if transition.assign_dose_level and not (levels and phases):
                self.add(
                    source, ("transitions", t, "assign_dose_level"),
                    "assigns a dose level, but study.yaml has no dose levels and phases",
                )  # fmt: skip
            for r, requirement in enumerate(transition.requires):
                loc: Loc = ("transitions", t, "requires", r)
                if requirement.form is not None and requirement.form not in self.study.forms:
                    self.add(source, (*loc, "form"), f"form {requirement.form} is not defined")
                if requirement.condition is not None:
                    self._check_expression(
                        source, (*loc, "condition"), requirement.condition, dict(subject), "bool"
                    )

    def _check_anchor_source(self, loc: Loc, reference: str) -> None:
        form_name, item_name = reference.split(".")
        form = self.study.form_by_name(form_name)
        found = find_item(form, item_name) if form else None
        if found is None:
            self.add(self.schedule_file, loc, f"anchor source {reference} is not an item of a form")
        elif found[1].type not in (DataType.DATE, DataType.DATETIME):
            self.add(self.schedule_file, loc, f"anchor source {reference} is not a date")

    # -- forms ------------------------------------------------------------------------------

    def check_form(self, form: FormDef) -> None:
        source = self.form_file(form)
        names: dict[str, str] = {}
        for g, group in enumerate(form.item_groups):
            self._check_name(source, ("item_groups", g, "name"), group.name, names, form)
            for i, item in enumerate(group.items):
                loc: Loc = ("item_groups", g, "items", i)
                self._check_name(source, (*loc, "name"), item.name, names, form)
                self._check_item(source, loc, item)
            self._check_preset_rows(source, g, group)
        for g, group in enumerate(form.item_groups):
            if group.show_if:
                self._check_expression(
                    source,
                    ("item_groups", g, "show_if"),
                    group.show_if,
                    self._scope(form, None),
                    "bool",
                )
            for i, item in enumerate(group.items):
                loc = ("item_groups", g, "items", i)
                own = group if group.repeating else None
                if item.show_if:
                    self._check_expression(
                        source, (*loc, "show_if"), item.show_if, self._scope(form, own), "bool"
                    )
                if item.derivation:
                    self._check_expression(
                        source, (*loc, "derivation"), item.derivation, self._scope(form, own), item
                    )
        if not any(p.file == source.display and "derivation" in p.where for p in self.problems):
            try:
                derivation_order(form)
            except DerivationCycle as cycle:
                self.add(source, ("item_groups",), f"derivations form a cycle: {cycle}")

    def _check_name(
        self, source: SourceFile, loc: Loc, name: str, names: dict[str, str], form: FormDef
    ) -> None:
        if name in names:
            self.add(source, loc, f"name {name} is used twice in form {form.oid}")
        names.setdefault(name, form.oid)

    def _check_item(self, source: SourceFile, loc: Loc, item: ItemDef) -> None:
        if item.codelist is not None and item.codelist not in self.study.codelists:
            self.add(source, (*loc, "codelist"), f"unknown codelist {item.codelist}")
        if item.units is not None and item.units not in self.study.units:
            self.add(source, (*loc, "units"), f"unknown measurement unit {item.units}")
        hard, soft = item.hard_range, item.soft_range
        if hard and soft:
            outside = (hard.min is not None and soft.min is not None and soft.min < hard.min) or (
                hard.max is not None and soft.max is not None and soft.max > hard.max
            )
            if outside:
                self.add(source, (*loc, "soft_range"), "soft range reaches outside the hard range")

    def _check_preset_rows(self, source: SourceFile, g: int, group: ItemGroupDef) -> None:
        if group.rows and not group.repeating:
            self.add(source, ("item_groups", g, "rows"), "preset rows need a repeating group")
        names = {item.name for item in group.items}
        for r, row in enumerate(group.rows):
            for key in row:
                if key not in names:
                    self.add(
                        source,
                        ("item_groups", g, "rows", r, key),
                        f"preset row names {key}, which is not an item of group {group.name}",
                    )

    # -- expressions ------------------------------------------------------------------------

    def _check_expression(
        self,
        source: SourceFile,
        loc: Loc,
        text: str,
        scope: dict[str, Any],
        expected: ItemDef | str,
    ) -> None:
        """Compile, check every name and function, and dry-run on sample values of `scope`
        (plus the other forms it names as FORM.ITEM)."""
        try:
            expression = compile_expression(text)
        except ExpressionError as error:
            self.add(source, loc, f"expression does not compile: {error}")
            return
        problems_before = len(self.problems)
        for name in sorted(expression.variables - scope.keys()):
            other = self.study.form_by_name(name)
            if other is None:
                self.add(source, loc, f"unknown item {name} in expression {text!r}")
        for form_name, item_name in CROSS_FORM_REFERENCE.findall(text):
            other = self.study.form_by_name(form_name)
            if other is None or form_name in scope:
                continue
            found = find_item(other, item_name)
            if found is None or found[0].repeating:
                self.add(
                    source,
                    loc,
                    f"unknown item {form_name}.{item_name} in expression {text!r}: form "
                    f"{form_name} has no such item outside repeating groups",
                )
            else:
                scope[form_name] = {
                    i.name: sample_value(i, self.study.codelists.get(i.codelist or ""))
                    for g, i in plain_items(other)
                }
        for function in sorted(unknown_functions(expression)):
            self.add(source, loc, f"unknown function {function}() in expression {text!r}")
        if len(self.problems) > problems_before:
            return
        try:
            result = expression.evaluate(scope)
        except ExpressionError as error:
            self.add(source, loc, f"expression fails on sample values: {error}")
            return
        message = _result_mismatch(result, expected)
        if message:
            self.add(source, loc, f"expression {text!r} {message}")

    def _scope(self, form: FormDef, own_group: ItemGroupDef | None) -> dict[str, Any]:
        """Sample values for every name an expression on `form` may read."""
        codelists = self.study.codelists
        scope: dict[str, Any] = {}
        for group in form.item_groups:
            row = {i.name: sample_value(i, codelists.get(i.codelist or "")) for i in group.items}
            if group.repeating:
                scope[group.name] = [row]
            else:
                scope.update(row)
        if own_group is not None:
            scope.update(
                {i.name: sample_value(i, codelists.get(i.codelist or "")) for i in own_group.items}
            )
        return scope


def _key(study: Study, filename: str) -> str:
    return next(display for display in study.sources if display.endswith(filename))


def _declared_oids(source: SourceFile, key: str) -> list[tuple[int, str]]:
    """(index, OID) of each entry under `key` in a codelist or unit file, read from its nodes."""

    root = source.root
    result: list[tuple[int, str]] = []
    if not isinstance(root, yaml.MappingNode):
        return result
    for key_node, value_node in root.value:
        if key_node.value == key and isinstance(value_node, yaml.SequenceNode):
            for index, entry in enumerate(value_node.value):
                if isinstance(entry, yaml.MappingNode):
                    for k, v in entry.value:
                        if k.value == "oid":
                            result.append((index, str(v.value)))
    return result


def _result_mismatch(result: Any, expected: ItemDef | str) -> str | None:
    """Why a sample result does not fit what the expression must produce, or None."""
    if result is None:
        return None
    if expected == "bool":
        return None if isinstance(result, bool) else f"must give true or false, gave {result!r}"
    assert isinstance(expected, ItemDef)
    numeric = expected.type in (DataType.INTEGER, DataType.FLOAT)
    if numeric and (isinstance(result, bool) or not isinstance(result, int | float)):
        return f"must give a number for {expected.type} item {expected.name}, gave {result!r}"
    if expected.type == DataType.BOOLEAN and not isinstance(result, bool):
        return f"must give true or false for item {expected.name}, gave {result!r}"
    textual = (DataType.TEXT, DataType.CHOICE, DataType.DATE, DataType.PARTIAL_DATE)
    if expected.type in textual and not isinstance(result, str):
        return f"must give text for {expected.type} item {expected.name}, gave {result!r}"
    return None
