"""Electronic signatures (21 CFR Part 11) through the write path and the pages: the
investigator signs with the password again (username and password at a session's first
signing, the password alone later), a wrong password is refused, audited and counted toward
the lockout, a coordinator cannot sign, an open query or a lock refuses, a change to signed
data breaks the signature visibly in the same transaction, and the investigator signs again
(both databases)."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import AccessDenied
from app.crf.changes import (
    DataLockSet,
    FormRef,
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
    Sign,
)
from app.db import unit_of_work
from app.demo import DEMO_PASSWORD
from app.models import (
    AuditRecord,
    LoginSession,
    Query,
    Signature,
    Subject,
    UserAccount,
    pk,
    utcnow,
)
from app.review.locks import DataLocked
from app.review.signatures import (
    SignatureRefused,
    WrongPassword,
    intact,
    record_failed_signing,
)
from app.review.signed_content import content_hash
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, csrf_token, logged_in_client

IE = FormRef("SE.SCR", 1, "F.IE", 1)
IC = {"IG.IC": {1: {"ICDAT": "2026-01-10", "ICVER": "2.0"}}}


def eligibility(investigator_says: str = "Y") -> dict[str, dict[int, dict[str, str]]]:
    """IE values: inclusion rows 1-11 met, exclusion rows 12-24 absent."""
    rows = {n: {"IEORRES": "Y" if n <= 11 else "N"} for n in range(1, 25)}
    return {
        "IG.IE.IECRIT": rows,
        "IG.IE": {1: {"ELIGYN": investigator_says, "ENRLDAT": "2026-01-12"}},
    }


def screened_subject(session: Session, study: Study) -> Subject:
    """A subject with consent and a complete eligibility form."""
    subject = factories.register(session, study)
    assert factories.save(session, study, subject, "F.IC", IC).saved
    assert factories.save(session, study, subject, "F.IE", eligibility(), complete=True).saved
    return subject


def sign(
    session: Session, study: Study, subject: Subject, ref: FormRef | None = None, *,
    password: str = DEMO_PASSWORD, username: str | None = "investigator",
    by: str = "investigator",
) -> Signature:  # fmt: skip
    outcome = factories.apply(session, study, Sign(pk(subject), ref, password, username), by=by)
    return outcome.plan.signatures[0].signature


def test_a_change_to_signed_data_breaks_the_signatures_and_the_investigator_signs_again(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        with pytest.raises(AccessDenied):
            sign(session, zm001, subject, by="coordinator", username="coordinator")
        with pytest.raises(SignatureRefused, match="needs your username and your password"):
            sign(session, zm001, subject, username=None)
        with pytest.raises(WrongPassword, match="The username or password is wrong"):
            sign(session, zm001, subject, password="not-my-password-1")
        with pytest.raises(WrongPassword):
            sign(session, zm001, subject, username="coordinator")
        casebook = sign(session, zm001, subject)
        form = sign(session, zm001, subject, IE)
        assert (casebook.signer_name, casebook.meaning) == (
            "Dr Li Wei", "I approve the data in this casebook as complete and accurate.",
        )  # fmt: skip
        assert form.meaning.startswith("I confirm the subject's eligibility")
        assert casebook.content_hash == content_hash(session, subject, None)
        assert form.content_hash == content_hash(session, subject, IE) != casebook.content_hash
        with pytest.raises(SignatureRefused, match="already signed by Dr Li Wei"):
            sign(session, zm001, subject, IE)

        # A form of another visit breaks the casebook's signature only.
        factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: {"SEX": "F"}}})
        session.refresh(casebook)
        session.refresh(form)
        assert casebook.broken_at is not None and form.broken_at is None
        assert casebook.broken_by_name == "Zhang Min"
        assert casebook.broken_by_change == "Demographics (Screening): DM.SEX changed"

        changed = eligibility()
        changed["IG.IE"][1]["ENRLDAT"] = "2026-01-13"
        assert factories.save(
            session, zm001, subject, "F.IE", changed, complete=True, reason="typo"
        ).saved
        session.refresh(form)
        assert form.broken_by_change == "Eligibility Criteria (Screening): IE.ENRLDAT changed"
        assert intact(session, subject, form) is False

        again = sign(session, zm001, subject, IE)
        assert again.broken_at is None and again.id != form.id
        assert intact(session, subject, again)
        trail = session.exec(
            select(AuditRecord.action, AuditRecord.username, AuditRecord.form_oid, AuditRecord.reason)
            .where(col(AuditRecord.action).in_(["sign", "signature_broken"]))
            .order_by(col(AuditRecord.id))
        ).all()  # fmt: skip
    assert trail == [
        ("sign", "investigator", None, None),
        ("sign", "investigator", "F.IE", None),
        ("signature_broken", "coordinator", None, "Demographics (Screening): DM.SEX changed"),
        ("signature_broken", "coordinator", "F.IE",
         "Eligibility Criteria (Screening): IE.ENRLDAT changed"),
        ("sign", "investigator", "F.IE", None),
    ]  # fmt: skip


def test_open_queries_and_locks_refuse_signing_a_freeze_does_not(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        target = QueryTarget("SE.SCR", 1, "F.IE", 1)
        factories.apply(session, zm001, QueryOpen(pk(subject), target, "ENRLDAT?"), by="monitor")
        query = session.exec(select(Query).where(Query.subject_id == subject.id)).one()
        with pytest.raises(SignatureRefused, match="while 1 query waits"):
            sign(session, zm001, subject, IE)
        answer = QueryChange(pk(subject), pk(query), 1, QueryAction.ANSWER, "as on the source")
        factories.apply(session, zm001, answer)
        with pytest.raises(SignatureRefused, match="while 1 query waits"):
            sign(session, zm001, subject)
        close = QueryChange(pk(subject), pk(query), 2, QueryAction.CLOSE, "thanks")
        factories.apply(session, zm001, close, by="monitor")
        with pytest.raises(SignatureRefused, match="This study does not sign this form"):
            sign(session, zm001, subject, FormRef("SE.SCR", 1, "F.IC", 1))

        factories.apply(
            session, zm001, DataLockSet(pk(subject), "freeze", "review"), by="datamanager"
        )
        assert sign(session, zm001, subject, IE).broken_at is None
        factories.apply(
            session, zm001, DataLockSet(pk(subject), "lock", "db lock"), by="datamanager"
        )
        with pytest.raises(DataLocked, match="This subject's casebook is locked"):
            sign(session, zm001, subject)


def _sign_on_page(
    client: httpx.Client, page: str, subject: Subject, **fields: str
) -> httpx.Response:
    return client.post(
        f"/subjects/{subject.id}/signatures",
        data={"csrftoken": csrf_token(client, page), "next": page, **fields},
    )


def test_signing_on_the_pages_asks_both_components_first_then_the_password(
    demo_engine: Engine, database_url: str, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        token = factories.api_token(session, "investigator")
    casebook = f"/subjects/{subject.id}"
    form = f"/subjects/{subject.id}/events/SE.SCR/1/forms/F.IE/1"
    ie = {"event_oid": "SE.SCR", "event_repeat": "1", "form_oid": "F.IE", "form_repeat": "1"}
    with InProcessServer(database_url, zm001) as server:
        coordinator = logged_in_client(server, "coordinator")
        shown = coordinator.get(casebook).text
        assert "Not signed yet." in shown and "Sign casebook" not in shown
        refused = _sign_on_page(coordinator, casebook, subject, password=DEMO_PASSWORD)
        assert refused.status_code == 403

        investigator = logged_in_client(server, "investigator")
        page = investigator.get(casebook).text
        assert "I approve the data in this casebook as complete and accurate." in page
        assert 'name="username"' in page and "Sign casebook" in page
        wrong = _sign_on_page(
            investigator, casebook, subject, username="investigator", password="Wrong-2026-x"
        )
        assert wrong.status_code == 409 and "The username or password is wrong" in wrong.text
        signed = _sign_on_page(
            investigator, casebook, subject, username="investigator", password=DEMO_PASSWORD
        )
        assert signed.status_code == 303
        page = investigator.get(casebook).text
        assert re.search(
            r"Signed by <strong>Dr Li Wei</strong>, \d{4}-\d\d-\d\d \d\d:\d\d UTC: I approve the "
            r"data in this casebook as complete and accurate.", page,
        )  # fmt: skip
        form_page = investigator.get(form).text
        assert "Sign this form" in form_page and 'name="username"' not in form_page
        assert (
            _sign_on_page(investigator, form, subject, password=DEMO_PASSWORD, **ie).status_code
            == 303
        )
        assert "Signed by <strong>Dr Li Wei</strong>" in investigator.get(form).text

        api = server.client(headers={"Authorization": f"Bearer {token}"})
        by_token = api.post(casebook + "/signatures", data={"password": DEMO_PASSWORD})
        assert not by_token.is_success  # an API token is no password: nothing is signed
        assert by_token.headers.get("location") != casebook + "#signatures"

        changed = eligibility()
        changed["IG.IE"][1]["ENRLDAT"] = "2026-01-13"
        with Session(demo_engine) as session:
            factories.save(session, zm001, subject, "F.IE", changed, complete=True, reason="typo")
        page = investigator.get(casebook).text
        assert re.search(
            r"<strong>Signature broken</strong> by Eligibility Criteria \(Screening\): IE.ENRLDAT "
            r"changed, Zhang Min, \d{4}-\d\d-\d\d \d\d:\d\d UTC.", page,
        )  # fmt: skip
        assert "Sign again" in page and "History of signatures (2)" in page
        assert '<span class="signature-state broken">signature broken</span>' in page
        assert "Signature broken by Eligibility Criteria" in investigator.get(form).text
    with Session(demo_engine) as session:
        user = factories.user(session, "investigator")
        failed = session.exec(
            select(AuditRecord.details).where(AuditRecord.action == "sign_failed")
        ).all()
        first = session.exec(
            select(LoginSession.signed_at).where(col(LoginSession.signed_at).is_not(None))
        ).all()
    assert user.failed_logins == 1 and failed == [
        f"wrong password; signing subject {subject.subject_key}"
    ]
    assert len(first) == 1
    with Session(demo_engine) as session:
        assert len(session.exec(select(Signature)).all()) == 2


def test_wrong_signing_passwords_lock_the_account_as_failed_logins_do(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        for _ in range(5):
            with pytest.raises(WrongPassword) as wrong:
                sign(session, zm001, subject, password="Wrong-2026-x")
            with unit_of_work(session):
                record_failed_signing(session, wrong.value, "web", utcnow())
        locked = session.exec(
            select(UserAccount).where(UserAccount.username == "investigator")
        ).one()
        assert locked.locked_until is not None
        with pytest.raises(SignatureRefused, match="locked after repeated wrong passwords"):
            sign(session, zm001, subject)


def test_a_visit_date_is_part_of_the_signed_casebook(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        casebook = sign(session, zm001, subject)
        form = sign(session, zm001, subject, IE)
        factories.date_visit(session, zm001, subject, "SE.SCR", date(2026, 1, 10))
        session.refresh(casebook)
        session.refresh(form)
    assert casebook.broken_by_change == "visit date of Screening changed from none to 2026-01-10"
    assert form.broken_at is None
