"""What an edit check's CEL condition reads: the check vocabulary (`forms/README.md`).

For a check running on one form instance (and one row, when its first item is in a
repeating group):
- `ITEM`: an item of the same form (of the same row, for a row check); `GROUP`: the rows of
  a repeating group of the form, as a list of maps;
- `FORM.ITEM`: another form at the same visit or, when the visit has none, its first
  instance in schedule order (e.g. `IC.ICDAT`);
- `visits.SCR.FORM.ITEM`, `visits.SCR.date`: a named visit (its OID without `SE.`; the first
  repeat of a repeating one); every visit of the schedule is there, and every form it
  schedules, as nulls until stored;
- `visit.date`, `visit.day`, and `previous` / `next`: the visit the form is at and the dated
  visits just before and after it (null for a log form, or when there is none);
- `logs.AE`: every instance of a log form, a list of maps, for `exists` / `all` / `filter` /
  `size` and `first` / `last` / `earliest` / `latest` / `greatest` / `least`;
- `subject.status`, `subject.dose_level`, `subject.phase`, `subject.key`, `anchors.infusion`
  (anchor dates) and `today` (the site's date, passed in: a check never reads a clock).
A form map holds its items outside repeating groups by name, its repeating groups as lists,
and `status` and `repeat`; a form not stored yet reads as nulls. Maps hold only the forms
and items the condition names (CEL converts every value it is given, on each evaluation).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from app.checks.subject_data import FormInstance, SubjectData, VisitInstance
from app.crf.values import expression_value
from app.study.edit_checks import VOCABULARY
from app.study.loader import Study
from app.study.model import FormDef, ItemDef, ItemGroupDef


def form_map(form: FormDef, instance: FormInstance | None, words: frozenset[str]) -> dict[str, Any]:
    """The CEL map of a form instance (nulls for a form not stored), with the items and
    repeating groups whose names are among `words` (the names a condition mentions)."""
    rows = instance.rows if instance is not None else {}
    values: dict[str, Any] = {
        "status": instance.status if instance else None,
        "repeat": instance.ref.form_repeat if instance else None,
    }
    for group in form.item_groups:
        group_rows = rows.get(group.oid, {})
        if group.repeating:
            if group.name in words:
                values[group.name] = [
                    row_map(group, group_rows[r], words) for r in sorted(group_rows)
                ]
        else:
            stored = group_rows.get(1, {})
            for item in group.items:
                if item.name in words:
                    values[item.name] = expression_value(item, stored.get(item.name))
    return values


def row_map(
    group: ItemGroupDef, row: dict[str, str | None], words: frozenset[str]
) -> dict[str, Any]:
    return {
        item.name: expression_value(item, row.get(item.name))
        for item in group.items
        if item.name in words
    }


class SubjectScope:
    """Builds the variables of each check evaluation for one subject; what every evaluation
    shares (visits, logs, anchors) is built once, on first use."""

    def __init__(self, study: Study, data: SubjectData, today: date) -> None:
        self.study = study
        self.data = data
        self.anchors = anchor_dates(study, data)
        self.today = today
        self._forms: dict[tuple[str, int, str, int, frozenset[str]], dict[str, Any]] = {}
        self._visits: dict[tuple[str, int, frozenset[str], frozenset[str]], dict[str, Any]] = {}
        self._shared: dict[
            tuple[str, frozenset[str], frozenset[str] | None, frozenset[str]], Any
        ] = {}
        self._dated = [v for v in data.visits if v.date is not None]

    def shared(
        self,
        names: frozenset[str],
        instance: FormInstance,
        forms: frozenset[str],
        visits: frozenset[str] | None,
        words: frozenset[str],
    ) -> dict[str, Any]:
        """The values of `names` for a check on `instance`, apart from those of a row
        (`row`). Visits and logs hold only `forms` (the forms the check names), `visits` only
        the named ones (all when None), and form maps only the items among `words` (the
        names the condition mentions): CEL converts every value it is given, and a whole
        casebook is thousands."""
        own = self._instance_map(instance, words)
        visit = self.data.visit_of(instance.ref)
        scope: dict[str, Any] = {}
        for name in names:
            if name in own:
                scope[name] = own[name]
            elif name in VOCABULARY:
                scope[name] = self._vocabulary(name, visit, forms, visits, words)
            else:
                form = self.study.form_by_name(name)
                if form is not None:
                    scope[name] = self._other_form(form, visit, words)
        return scope

    def subject_level(
        self, names: frozenset[str], forms: frozenset[str], words: frozenset[str]
    ) -> dict[str, Any]:
        """The values of `names` for an expression about the whole subject (one with no
        form of its own, such as the escalation's facts): `FORM.ITEM` is the form's first
        instance, and `visit`, `previous` and `next` are null."""
        scope: dict[str, Any] = {}
        for name in names:
            if name in VOCABULARY:
                scope[name] = self._vocabulary(name, None, forms, None, words)
            elif (form := self.study.form_by_name(name)) is not None:
                scope[name] = self._other_form(form, None, words)
        return scope

    @staticmethod
    def row(
        group: ItemGroupDef, instance: FormInstance, repeat: int, items: tuple[ItemDef, ...]
    ) -> dict[str, Any]:
        """The values of `items` in row `repeat` of `group` (a repeating group)."""
        stored = instance.rows.get(group.oid, {}).get(repeat, {})
        return {item.name: expression_value(item, stored.get(item.name)) for item in items}

    def _vocabulary(
        self,
        name: str,
        visit: VisitInstance | None,
        forms: frozenset[str],
        visits: frozenset[str] | None,
        words: frozenset[str],
    ) -> Any:
        match name:
            case "visit":
                return self._visit_map(visit, forms, words) if visit else None
            case "previous" | "next":
                return self._neighbour(visit, forms, words, before=name == "previous")
            case "today":
                return self.today.isoformat()
        across = name in ("visits", "logs")
        key = (
            name, forms if across else frozenset(), visits if name == "visits" else None,
            words if across else frozenset(),
        )  # fmt: skip
        if key not in self._shared:
            self._shared[key] = self._build_shared(name, forms, visits, words)
        return self._shared[key]

    def _build_shared(
        self, name: str, forms: frozenset[str], visits: frozenset[str] | None, words: frozenset[str]
    ) -> Any:
        subject = self.data.subject
        match name:
            case "visits":
                stored: dict[str, VisitInstance] = {}
                for v in self.data.visits:
                    stored.setdefault(v.event_oid, v)
                return {
                    visit.oid.removeprefix("SE."): self._visit_map(
                        stored.get(visit.oid) or VisitInstance(visit.oid, 1, None), forms, words
                    )
                    for visit in self.study.schedule.visits
                    if visits is None or visit.oid.removeprefix("SE.") in visits
                }
            case "logs":
                logs: dict[str, Any] = {log: [] for log in self._log_names() if log in forms}
                for form_name, instances in self.data.logs.items():
                    if form_name in forms:
                        logs[form_name] = [self._instance_map(i, words) for i in instances]
                return logs
            case "subject":
                return {
                    "key": subject.subject_key, "status": subject.status,
                    "dose_level": subject.dose_level, "phase": subject.phase,
                }  # fmt: skip
            case "anchors":
                return {
                    anchor.id: self.anchors[anchor.id].isoformat()
                    if anchor.id in self.anchors
                    else None
                    for anchor in self.study.schedule.anchors
                }
        raise AssertionError(name)

    def _log_names(self) -> list[str]:
        return [self.study.forms[log.form].name for log in self.study.schedule.log_forms]

    def _other_form(
        self, form: FormDef, visit: VisitInstance | None, words: frozenset[str]
    ) -> dict[str, Any]:
        if visit is not None and form.name in visit.forms:
            return self._instance_map(visit.forms[form.name], words)
        instances = self.data.instances(form.oid)
        return self._instance_map(instances[0], words) if instances else form_map(form, None, words)

    def _instance_map(self, instance: FormInstance, words: frozenset[str]) -> dict[str, Any]:
        ref = instance.ref
        key = (ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat, words)
        if key not in self._forms:
            self._forms[key] = form_map(instance.form, instance, words)
        return self._forms[key]

    def _visit_map(
        self, visit: VisitInstance, forms: frozenset[str], words: frozenset[str]
    ) -> dict[str, Any]:
        key = (visit.event_oid, visit.repeat, forms, words)
        if key not in self._visits:
            definition = self.study.visit(visit.event_oid)
            values: dict[str, Any] = {
                "oid": visit.event_oid,
                "name": definition.name if definition else visit.event_oid,
                "repeat": visit.repeat,
                "date": visit.date.isoformat() if visit.date else None,
                "day": self._study_day(visit.date),
            }
            for entry in definition.forms if definition else ():
                form = self.study.forms.get(entry.form)
                if form is not None and form.name in forms:  # nulls until stored
                    values[form.name] = form_map(form, None, words)
            for name, instance in visit.forms.items():
                if name in forms:
                    values[name] = self._instance_map(instance, words)
            self._visits[key] = values
        return self._visits[key]

    def _study_day(self, day: date | None) -> float | None:
        anchor = self.study.schedule.study_day_anchor
        if day is None or anchor is None or anchor not in self.anchors:
            return None
        return float((day - self.anchors[anchor]).days)

    def _neighbour(
        self,
        visit: VisitInstance | None,
        forms: frozenset[str],
        words: frozenset[str],
        *,
        before: bool,
    ) -> dict[str, Any] | None:
        """The dated visit just before (or after) `visit`, by date, then schedule order."""
        if visit is None or visit.date is None or visit not in self._dated:
            return None
        index = self._dated.index(visit)
        others = [v for v in self._dated if v is not visit]
        if before:
            earlier = [v for v in others if (v.date, self._dated.index(v)) < (visit.date, index)]
            return self._visit_map(max(earlier, key=self._when), forms, words) if earlier else None
        later = [v for v in others if (v.date, self._dated.index(v)) > (visit.date, index)]
        return self._visit_map(min(later, key=self._when), forms, words) if later else None

    def _when(self, visit: VisitInstance) -> tuple[date, int]:
        assert visit.date is not None
        return visit.date, self._dated.index(visit)


def anchor_dates(study: Study, data: SubjectData) -> dict[str, date]:
    """Known anchor dates by anchor id, from the first instance of the form each names."""
    dates = {}
    for anchor in study.schedule.anchors:
        form_name, item_name = anchor.source.split(".")
        form = study.form_by_name(form_name)
        instances = data.instances(form.oid) if form else []
        for rows in (instances[0].rows if instances else {}).values():
            text = rows.get(1, {}).get(item_name)
            if text and len(text) >= 10:
                dates[anchor.id] = date.fromisoformat(text[:10])
    return dates
