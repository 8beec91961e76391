"""A change that undoes what a reached status rests on is never silent: as the study says, it
is refused, or saved with a status alert for the investigator that closes when the data meet
the requirement again. On SQLite and PostgreSQL, over the demo study."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import html
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.crf import reads
from app.crf.changes import FormRef, StatusRefused
from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.models import AuditRecord, StatusAlert, Subject
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, logged_in_client

ELIGIBLE = "Every inclusion criterion must be met and no exclusion criterion present."
AGREES = (
    "The investigator's eligibility answer differs from the eligibility derived from the criteria."
)


@pytest.fixture(scope="module")
def demo(module_database_url: str, zm001: Study) -> Iterator[Engine]:
    engine = make_engine(module_database_url)
    load_demo(engine, zm001, subjects=len(SCENARIOS))
    yield engine
    engine.dispose()


def first_subject(session: Session, status: str) -> Subject:
    return session.exec(
        select(Subject)
        .where(Subject.status == status, Subject.site_id == 1)
        .order_by(col(Subject.subject_key))
    ).first() or pytest.fail(f"the demo has no subject {status} at site 01")


def criterion(session: Session, study: Study, subject: Subject, answer: str) -> dict:  # type: ignore[type-arg]
    """Rows naming only the first inclusion criterion, answered `answer`."""
    ref = FormRef("SE.SCR", 1, "F.IE", 1)
    stored = reads.load_form(session, subject, study.form("F.IE"), ref)
    assert stored is not None
    return {"IG.IE.IECRIT": {1: {**stored.rows["IG.IE.IECRIT"][1], "IEORRES": answer}}}


def open_alerts(session: Session, subject: Subject) -> list[tuple[str, str]]:
    alerts = session.exec(
        select(StatusAlert).where(
            StatusAlert.subject_id == subject.id, col(StatusAlert.closed_at).is_(None)
        )
    )
    return sorted((alert.status, alert.requirement) for alert in alerts)


def test_eligibility_corrected_after_enrolment_opens_alerts_until_corrected_back(
    demo: Engine, module_database_url: str, zm001: Study
) -> None:
    with Session(demo, expire_on_commit=False) as session:
        subject = first_subject(session, "enrolled")
        outcome = factories.save(
            session, zm001, subject, "F.IE", criterion(session, zm001, subject, "N"),
            reason="criterion IN01 re-assessed", by="investigator",
        )  # fmt: skip
        assert outcome.saved, outcome.evaluation.errors
        assert open_alerts(session, subject) == [("enrolled", ELIGIBLE), ("enrolled", AGREES)]
        # the other 23 criteria and the decision, which the save did not name, are kept
        ie = reads.load_form(session, subject, zm001.form("F.IE"), FormRef("SE.SCR", 1, "F.IE", 1))
        assert ie is not None and len(ie.rows["IG.IE.IECRIT"]) == 24
        assert ie.rows["IG.IE"][1]["ELIGYN"] == "Y" and ie.rows["IG.IE"][1]["ELIGDER"] == "N"
        assert (
            reads.get_subject(session, factories.author(session).access, subject.id or 0).status
            == "enrolled"
        )

    with InProcessServer(module_database_url, zm001) as server:
        page = logged_in_client(server, "investigator").get(f"/subjects/{subject.id}")
    alert = html.fromstring(page.text).find_class("status-alerts")
    assert alert, "the casebook shows the alert"
    text = alert[0].text_content()
    assert "2 requirements of a status this subject has reached no longer hold" in text
    assert ELIGIBLE in text and AGREES in text

    with Session(demo, expire_on_commit=False) as session:
        factories.save(
            session, zm001, subject, "F.IE", criterion(session, zm001, subject, "Y"),
            reason="re-assessment entered on the wrong criterion", by="investigator",
        )  # fmt: skip
        assert open_alerts(session, subject) == []
        trail = session.exec(
            select(AuditRecord.action, AuditRecord.new_value)
            .where(AuditRecord.subject_id == subject.id)
            .where(col(AuditRecord.action).startswith("status_alert"))
            .order_by(col(AuditRecord.id))
        ).all()
        assert [action for action, _ in trail] == [
            "status_alert_open", "status_alert_open", "status_alert_close", "status_alert_close"
        ]  # fmt: skip


def test_undoing_a_leukapheresis_that_the_study_says_must_hold_is_refused(
    demo: Engine, zm001: Study
) -> None:
    with Session(demo, expire_on_commit=False) as session:
        subject = first_subject(session, "leukapheresed")
        ref = FormRef("SE.APH", 1, "F.APH", 1)
        stored = reads.load_form(session, subject, zm001.form("F.APH"), ref)
        assert stored is not None
        version = stored.form_data.version
        group = zm001.form("F.APH").item_groups[0].oid
        undone = {group: {1: {"APHYN": "N", "APHNDRSN": "VENOUS ACCESS FAILURE"}}}
        with pytest.raises(StatusRefused, match="the subject is leukapheresed, which needs"):
            factories.save(
                session, zm001, subject, "F.APH", undone, event="SE.APH",
                reason="no collection", by="investigator",
            )  # fmt: skip
        assert factories.stored_version(session, subject, zm001, ref) == version
        assert open_alerts(session, subject) == []
