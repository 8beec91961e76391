"""`trialdesk study check` for the SDV plan (`sdv.yaml`): every form and item it names must
exist, reported with file and line like the other checks."""

from __future__ import annotations

from app.study.loader import Study, find_item
from app.study.problems import Problem


def check_sdv_plan(study: Study) -> list[Problem]:
    """Every unknown form or item the study's SDV plan names; empty without a plan."""
    plan = study.sdv
    display = next((name for name in study.sources if name.endswith("/sdv.yaml")), None)
    if plan is None or display is None:
        return []
    source = study.sources[display]
    problems = [
        source.problem(("every_subject", i), f"unknown form {oid}")
        for i, oid in enumerate(plan.every_subject)
        if oid not in study.forms
    ]
    for form_oid, names in plan.items.items():
        form = study.forms.get(form_oid)
        if form is None:
            problems.append(source.problem(("items", form_oid), f"unknown form {form_oid}"))
            continue
        problems += [
            source.problem(("items", form_oid, i), f"form {form.name} has no item {name}")
            for i, name in enumerate(names)
            if find_item(form, name) is None
        ]
    return problems
