"""The study's source data verification (SDV) plan as data (`sdv.yaml`, optional): which
forms a monitor verifies against the source, and how much of them, in the spirit of
ICH E6(R3)'s risk-based monitoring.

A form instance needs verifying when any rule selects it: its form is in `every_subject`;
its subject is one of the first `first_subjects_per_site` registered at the site (every form
in full); or its subject falls in the `sample_percent` sample (every form). `items` narrows
what "in full" means for a form: only the items listed there are verified, each on its own.
The sample is a pure function of the study OID and the subject key (a stable hash), so any
server process decides it alike, with nothing remembered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from app.study.model import NAME_PATTERN, OID_PATTERN, Definition

FormOid = Annotated[str, Field(pattern=OID_PATTERN)]
ItemName = Annotated[str, Field(pattern=NAME_PATTERN)]


class SdvPlan(Definition):
    """`sdv.yaml`: the study's SDV plan."""

    every_subject: tuple[FormOid, ...] = Field(
        default=(), description="forms verified for every subject (eligibility, infusion, ...)"
    )
    first_subjects_per_site: int = Field(
        default=0, ge=0, description="each site's first N registered subjects: every form"
    )
    sample_percent: float = Field(
        default=0, ge=0, le=100, description="% of the other subjects: every form verified"
    )
    items: dict[FormOid, tuple[ItemName, ...]] = Field(
        default_factory=dict,
        description="per-item verification: a form listed here needs only these items verified",
    )


@dataclass(frozen=True)
class Requirement:
    """What of a form instance needs verifying: the whole form (`items` None) or the listed
    item names, each verified on its own; `why` says which rule asked for it."""

    items: tuple[str, ...] | None
    why: str


def in_sample(study_oid: str, subject_key: str, percent: float) -> bool:
    """Whether the subject is in the sample: the first 8 bytes of SHA-256 of
    "<study OID>:<subject key>", as a fraction of 2^64, below `percent` %."""
    digest = hashlib.sha256(f"{study_oid}:{subject_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < percent


def requirement(
    plan: SdvPlan | None, study_oid: str, subject_key: str, site_rank: int, form_oid: str
) -> Requirement | None:
    """What of `form_oid` needs verifying for a subject that is the `site_rank`-th (from 1)
    registered at its site; None when the plan does not ask for it (or there is no plan)."""
    if plan is None:
        return None
    if form_oid in plan.every_subject:
        why = "verified for every subject"
    elif site_rank <= plan.first_subjects_per_site:
        first = plan.first_subjects_per_site
        why = (
            "the site's first subject"
            if first == 1
            else f"one of the site's first {first} subjects"
        )
    elif in_sample(study_oid, subject_key, plan.sample_percent):
        why = f"subject in the {plan.sample_percent:g} % sample"
    else:
        return None
    items = plan.items.get(form_oid)
    return Requirement(tuple(items) if items is not None else None, why)
