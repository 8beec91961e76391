"""Escalation subjects built as sites build them, through the write path: consent,
eligibility, enrolment at a dose level, the infusion, and an AE marked as a DLT."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import Session

from app.crf.write import Outcome
from app.models import Subject
from app.study.loader import Study
from tests import factories


def saved(outcome: Outcome) -> Outcome:
    assert outcome.saved, outcome.evaluation.errors
    return outcome


def eligible(session: Session, study: Study, on: date, *, site_id: int = 1) -> Subject:
    """A new subject consented a week before `on`, eligible and ready to enrol on `on`."""
    coordinator = "coordinator" if site_id == 1 else "coordinator2"
    investigator = "investigator" if site_id == 1 else "investigator2"
    subject = factories.register(session, study, site_id=site_id, by=coordinator)
    consent = {"ICVER": "2.0", "ICDAT": (on - timedelta(days=7)).isoformat(), "ICLTFU": "Y"}
    saved(
        factories.save(
            session, study, subject, "F.IC", {"IG.IC": {1: consent}}, complete=True, by=coordinator
        )
    )
    criteria = {n: {"IEORRES": "Y" if n <= 11 else "N"} for n in range(1, 25)}
    decision = {"ELIGYN": "Y", "ENRLDAT": on.isoformat()}
    rows = {"IG.IE.IECRIT": criteria, "IG.IE": {1: decision}}
    saved(factories.save(session, study, subject, "F.IE", rows, complete=True, by=investigator))
    return subject


def enrol(
    session: Session,
    study: Study,
    level: str,
    on: date,
    *,
    phase: str = "ESCALATION",
    site_id: int = 1,
) -> Subject:
    """An eligible subject enrolled at `level` on `on` by the investigator (the write path
    refuses a level not open: StatusRefused)."""
    subject = eligible(session, study, on, site_id=site_id)
    investigator = "investigator" if site_id == 1 else "investigator2"
    return factories.move(
        session, study, subject, "enrolled", on, dose_level=level, phase=phase, by=investigator
    ).subject


def infuse(
    session: Session, study: Study, subject: Subject, on: date, *, site_id: int = 1
) -> Outcome:
    """Save the infusion start (10:00 on `on`); the outcome says whether the gates let it."""
    rows = {"IG.EX": {1: {"EXSTDTM": f"{on.isoformat()} 10:00"}}}
    by = "coordinator" if site_id == 1 else "coordinator2"
    return factories.save(session, study, subject, "F.EX", rows, event="SE.D0", by=by)


def infused(session: Session, study: Study, level: str, on: date, *, site_id: int = 1) -> Subject:
    """A subject enrolled 35 days before `on` and infused on `on`."""
    subject = enrol(session, study, level, on - timedelta(days=35), site_id=site_id)
    saved(infuse(session, study, subject, on, site_id=site_id))
    return subject


def dlt(session: Session, study: Study, subject: Subject, onset: date) -> Outcome:
    """An AE of grade 3 starting on `onset`, marked by the investigator as meeting the DLT
    criteria."""
    row = {
        "AESPID": "AE001", "AETERM": "Neutropenic sepsis", "AESTDAT": onset.isoformat(),
        "AEONGO": "Y", "AETOXGR": "3", "AESER": "N", "AEACN": "NOT APPLICABLE",
        "AEOUT": "NOT RECOVERED/NOT RESOLVED", "AESIYN": "N", "AERELZM": "RELATED",
        "AERELLD": "POSSIBLY RELATED", "AEDLTYN": "Y",
    }  # fmt: skip
    return saved(
        factories.save(session, study, subject, "F.AE", {"IG.AE": {1: row}}, event="SE.LOG")
    )
