"""A subject's escalation facts read from the casebook by the study's CEL expressions
(`escalation.yaml`, `casebook.subject_facts`): the infusion date, the delivered dose against
target, the onsets of DLTs and the date the subject left the study."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from app.checks.scope import SubjectScope
from app.checks.subject_data import SubjectData
from app.escalation.outcomes import SubjectFacts
from app.expressions import Expression, ExpressionError, compile_expression
from app.study.escalation_rules import SubjectFactsDef
from app.study.loader import Study

FACTS = ("infused_on", "delivered_percent", "dlt_onsets", "ended_on", "judged_not_evaluable")
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class CompiledFacts:
    expressions: dict[str, Expression]
    forms: frozenset[str]
    """The forms the expressions read (`FORM.ITEM`, `logs.FORM`)."""
    words: frozenset[str]


@lru_cache(maxsize=16)
def compile_facts(definition: SubjectFactsDef, form_names: frozenset[str]) -> CompiledFacts:
    """Compile the facts' expressions; raises ExpressionError for one that does not compile."""
    sources = {name: getattr(definition, name) for name in FACTS}
    words = frozenset(word for source in sources.values() for word in _WORD.findall(source))
    return CompiledFacts(
        {name: compile_expression(source) for name, source in sources.items()},
        words & form_names,
        words,
    )


def subject_facts(study: Study, data: SubjectData, today: date) -> SubjectFacts:
    """The subject's facts; raises ExpressionError (naming the fact and the subject) when the
    casebook's values cannot be read by an expression."""
    assert study.escalation is not None and study.escalation.casebook is not None
    compiled = compile_facts(
        study.escalation.casebook.subject_facts, frozenset(f.name for f in study.forms.values())
    )
    scope = SubjectScope(study, data, today)
    values: dict[str, Any] = {}
    for name, expression in compiled.expressions.items():
        variables = scope.subject_level(expression.variables, compiled.forms, compiled.words)
        try:
            values[name] = expression.evaluate(variables)
        except ExpressionError as error:
            raise ExpressionError(
                f"the escalation fact {name} of subject {data.subject.subject_key}: {error}"
            ) from error
    percent = values["delivered_percent"]
    return SubjectFacts(
        infused_on=_date(values["infused_on"]),
        delivered_percent=float(percent) if percent is not None else None,
        dlt_onsets=tuple(d for d in map(_date, values["dlt_onsets"] or ()) if d is not None),
        ended_on=_date(values["ended_on"]),
        judged_not_evaluable=values["judged_not_evaluable"] is True,
    )


def _date(value: object) -> date | None:
    """The date of an ISO date or datetime text (a partial date is no date)."""
    if isinstance(value, str) and len(value) >= 10:
        return date.fromisoformat(value[:10])
    return None
