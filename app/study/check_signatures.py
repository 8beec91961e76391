"""`trialdesk study check` for `signatures.yaml`: each form signed on its own must be a form
of the study, named once."""

from __future__ import annotations

from app.study.loader import Study
from app.study.problems import Problem


def check_signatures(study: Study) -> list[Problem]:
    """Every problem of the study's signature settings (none without them)."""
    settings = study.signatures
    if settings is None:
        return []
    source = next(s for display, s in study.sources.items() if display.endswith("signatures.yaml"))
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, signed in enumerate(settings.forms):
        loc = ("forms", index, "form")
        if signed.form not in study.forms:
            problems.append(source.problem(loc, f"unknown form {signed.form}"))
        elif signed.form in seen:
            problems.append(source.problem(loc, f"form {signed.form} is named twice"))
        seen.add(signed.form)
    return problems
