"""Edit checks EC001-EC023 of spec §7.1 (consent, demographics, eligibility) and §7.2
(leukapheresis, manufacturing, lymphodepletion), as `forms/checks/*.yaml` carries them: for
each check, data that pass and data that fail, entered through the write path (both
databases). A hard check refuses the save of its form with its message next to its first
item; a soft check lets the save through and opens a system query on its first item."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.crf.write import Outcome
from app.models import Query, QueryState, Subject
from app.study.loader import Study, find_item
from tests import factories

Values = Mapping[str, str | list[str] | None]

ICDAT = "2026-01-05"
L0 = "2026-02-01"
"""Leukapheresis day; the screening assessments are dated between ICDAT and L0."""
D0 = "2026-03-01"
"""Infusion day; lymphodepletion on D-5 to D-3 (2026-02-24 to 2026-02-26)."""


# -- saving forms -----------------------------------------------------------------------------


def save(
    session: Session,
    study: Study,
    subject: Subject,
    form_oid: str,
    values: Values,
    *,
    event: str = "SE.SCR",
    rows: Mapping[str, Mapping[int, Values]] | None = None,
) -> Outcome:
    """Save `values` (items outside repeating groups, by name, each into its group) and the
    rows of repeating groups `rows` (by group OID)."""
    form = study.form(form_oid)
    groups: dict[str, dict[int, dict[str, str | list[str] | None]]] = {}
    for name, value in values.items():
        found = find_item(form, name)
        assert found is not None and not found[0].repeating, name
        groups.setdefault(found[0].oid, {}).setdefault(1, {})[name] = value
    return factories.save(session, study, subject, form_oid, groups | dict(rows or {}), event=event)


def saved(outcome: Outcome) -> Outcome:
    assert outcome.saved, outcome.evaluation.errors
    return outcome


def refusal(outcome: Outcome, group: str, item: str, row: int = 1) -> str:
    """The message that refused the save, next to `item` of row `row` of `group`."""
    assert not outcome.saved
    return outcome.evaluation.errors[(group, row, item)]


def open_queries(session: Session, subject: Subject) -> list[tuple[str | None, str | None]]:
    """(check id, item OID) of the subject's open system queries."""
    found = session.exec(
        select(Query.check_id, Query.item_oid)
        .where(Query.subject_id == subject.id, Query.state == QueryState.OPEN)
        .order_by(col(Query.id))
    ).all()
    return [(check_id, item) for check_id, item in found]


def queried(session: Session, subject: Subject, check_id: str) -> list[str | None]:
    """Items with an open query of `check_id`."""
    return [item for check, item in open_queries(session, subject) if check == check_id]


def new_subject(session: Session, study: Study) -> Subject:
    return factories.register(session, study)


def consent(session: Session, study: Study, subject: Subject, day: str = ICDAT) -> None:
    saved(save(session, study, subject, "F.IC", {"ICVER": "2.0", "ICDAT": day, "ICLTFU": "Y"}))


def demographics(
    session: Session, study: Study, subject: Subject, born: str, sex: str = "F", wocbp: str = "Y"
) -> Outcome:
    values = {"BRTHDAT": born, "SEX": sex, "ETHNIC": "HAN", "RACE": "ASIAN"}
    return save(session, study, subject, "F.DM", values | {"CHILDPOT": wocbp})


INCLUSION = [f"IN{n:02d}" for n in range(1, 12)]
EXCLUSION = [f"EX{n:02d}" for n in range(1, 14)]
CRITERIA = INCLUSION + EXCLUSION
"""The preset rows of the eligibility form, in order (row 1 = IN01)."""
MET = dict.fromkeys(INCLUSION, "Y") | dict.fromkeys(EXCLUSION, "N")


def eligibility(
    session: Session,
    study: Study,
    subject: Subject,
    answers: Mapping[str, str | None],
    eligible: str | None = None,
    enrolled: str | None = None,
    *,
    event: str = "SE.SCR",
) -> Outcome:
    """The eligibility form with criteria answered as `answers` (by IETESTCD)."""
    rows = {n: {"IEORRES": answers.get(code)} for n, code in enumerate(CRITERIA, start=1)}
    decision = {"ELIGYN": eligible, "ENRLDAT": enrolled}
    return save(session, study, subject, "F.IE", decision, event=event, rows={"IG.IE.IECRIT": rows})


def row_of(code: str) -> int:
    return CRITERIA.index(code) + 1


# -- §7.1 consent and demographics ------------------------------------------------------------


def test_ec001_consent_precedes_every_procedure(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = new_subject(session, zm001)
        saved(save(session, zm001, subject, "F.LBHEM", {"LBDAT": "2026-01-06"}))
        rows = {"IG.VS.VSMEAS": {1: {"VSDTC": "2026-01-05T09:00:00", "TEMP": "36.6"}}}
        saved(factories.save(session, zm001, subject, "F.VS", rows))
        consent(session, zm001, subject, ICDAT)  # on the day of the first procedure: passes

        other = new_subject(session, zm001)
        saved(save(session, zm001, other, "F.LBCHEM", {"LBDAT": "2026-01-04"}))
        outcome = save(session, zm001, other, "F.IC", {"ICVER": "2.0", "ICDAT": ICDAT})
        assert "consent date is after the date of a study procedure" in refusal(
            outcome, "IG.IC", "ICDAT"
        )


def test_ec001_a_procedure_dated_before_a_stored_consent_opens_a_query(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = new_subject(session, zm001)
        consent(session, zm001, subject, ICDAT)
        saved(save(session, zm001, subject, "F.APH", {"APHYN": "Y", "APHDAT": "2026-01-02"},
                   event="SE.APH"))  # fmt: skip
        assert queried(session, subject, "EC001") == ["IT.IC.ICDAT"]
        saved(save(session, zm001, subject, "F.APH", {"APHYN": "Y", "APHDAT": L0}, event="SE.APH"))
        assert queried(session, subject, "EC001") == []


@pytest.mark.parametrize(
    ("born", "passes"),
    [
        ("2008-01-05", True),  # 18 on the day of consent
        ("2008-01-06", False),  # 17
        ("1955-01-06", True),  # 70
        ("1955-01-05", False),  # 71 on the day of consent
    ],
)
def test_ec002_age_at_consent_18_to_70(
    demo_engine: Engine, zm001: Study, born: str, passes: bool
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = new_subject(session, zm001)
        consent(session, zm001, subject)
        outcome = demographics(session, zm001, subject, born)
        if passes:
            saved(outcome)
        else:
            assert "outside 18 to 70" in refusal(outcome, "IG.DM", "BRTHDAT")


def test_ec003_birth_before_consent(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = new_subject(session, zm001)
        consent(session, zm001, subject)
        outcome = demographics(session, zm001, subject, "2026-01-06")
        assert "must be before the consent date" in refusal(outcome, "IG.DM", "BRTHDAT")
        saved(demographics(session, zm001, subject, "1990-06-15"))


# -- §7.1 eligibility -------------------------------------------------------------------------
