"""Source data verification through the write path and the pages (both databases): a monitor
verifies a complete form at the version seen; a change to a verified value drops the
verification in the same transaction, audited and shown as "verification dropped"; it can
be verified again; per-item SDV drops only the changed item's verification; a freeze lets
verification go on and a lock refuses it; a coordinator cannot verify; the monitor's `/sdv`
lists only the monitor's sites."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import AccessDenied
from app.crf.changes import DataLockSet, FormRef, VerifyForm, WithdrawVerification
from app.models import AuditRecord, SourceVerification, Subject, pk
from app.review.locks import DataLocked
from app.review.sdv_reads import SdvState, form_sdv, sdv_by_site
from app.review.verification import VerificationRefused
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, csrf_token, logged_in_client
from tests.test_rederivation import CONSENT, DEMOGRAPHICS

IC = FormRef("SE.SCR", 1, "F.IC", 1)
DM = FormRef("SE.SCR", 1, "F.DM", 1)


def verify(
    session: Session, study: Study, subject: Subject, ref: FormRef, by: str = "monitor"
) -> None:
    version = factories.stored_version(session, subject, study, ref)
    factories.apply(session, study, VerifyForm(pk(subject), ref, version), by=by)


def state(session: Session, study: Study, subject: Subject, ref: FormRef) -> SdvState:
    return form_sdv(session, study, subject, ref, "complete").state


def consent(
    session: Session, study: Study, subject: Subject, by: str = "coordinator", **changed: str
) -> None:
    reason = "corrected from the ICF" if changed else None
    rows = {"IG.IC": {1: {**CONSENT, **changed}}}
    saved = factories.save(
        session, study, subject, "F.IC", rows, complete=True, reason=reason, by=by
    )
    assert saved.saved


def test_a_change_to_a_verified_value_drops_its_verification(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        factories.save(session, zm001, subject, "F.IC", {"IG.IC": {1: {"ICVER": "2.0"}}})
        with pytest.raises(VerificationRefused, match="Only a complete form can be verified"):
            verify(session, zm001, subject, IC)
        consent(session, zm001, subject)
        assert state(session, zm001, subject, IC) == SdvState.DUE
        with pytest.raises(AccessDenied):
            verify(session, zm001, subject, IC, by="coordinator")
        with pytest.raises(AccessDenied):
            verify(session, zm001, subject, IC, by="datamanager")
        with pytest.raises(VerificationRefused, match="saved after you opened it"):
            factories.apply(session, zm001, VerifyForm(pk(subject), IC, 1), by="monitor")
        verify(session, zm001, subject, IC)
        assert state(session, zm001, subject, IC) == SdvState.VERIFIED
        with pytest.raises(VerificationRefused, match="verified already"):
            verify(session, zm001, subject, IC)
        assert len(sdv_by_site(session, zm001, {1})[0].verified) == 1

        consent(session, zm001, subject, ICDAT="2026-01-04")
        dropped = form_sdv(session, zm001, subject, IC, "complete")
        assert dropped.state == SdvState.DROPPED
        (drop,) = dropped.dropped
        assert drop.items == ("Date main ICF signed",) and drop.by_name
        assert len(sdv_by_site(session, zm001, {1})[0].dropped) == 1
        row = session.exec(select(SourceVerification)).one()
        assert (row.changed_items, row.changed_in_version) == ("IT.IC.ICDAT", 3)

        verify(session, zm001, subject, IC)
        assert state(session, zm001, subject, IC) == SdvState.VERIFIED
        with pytest.raises(VerificationRefused, match="Give a reason"):
            factories.apply(session, zm001, WithdrawVerification(pk(subject), IC, ""), by="monitor")
        factories.apply(
            session,
            zm001,
            WithdrawVerification(pk(subject), IC, "wrong subject's ICF"),
            by="monitor",
        )
        assert state(session, zm001, subject, IC) == SdvState.DUE
        trail = session.exec(
            select(AuditRecord.action, AuditRecord.username, AuditRecord.form_oid, AuditRecord.reason)
            .where(col(AuditRecord.action).startswith("sdv_")).order_by(col(AuditRecord.id))
        ).all()  # fmt: skip
        assert trail == [
            ("sdv_verify", "monitor", "F.IC", None),
            ("sdv_drop", "coordinator", "F.IC", None),
            ("sdv_verify", "monitor", "F.IC", None),
            ("sdv_withdraw", "monitor", "F.IC", "wrong subject's ICF"),
        ]
        details = session.exec(
            select(AuditRecord.details).where(AuditRecord.action == "sdv_drop")
        ).one()
        assert details and "changed: IT.IC.ICDAT (form version 3)" in details


def test_per_item_sdv_drops_only_the_changed_item(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        consent(session, zm001, subject)
        rows = {"IG.DM": {1: DEMOGRAPHICS}}
        assert factories.save(session, zm001, subject, "F.DM", rows, complete=True).saved
        verify(session, zm001, subject, DM)
        items = session.exec(
            select(SourceVerification.item_oid).order_by(col(SourceVerification.id))
        )
        assert items.all() == ["IT.DM.BRTHDAT", "IT.DM.SEX"]
        # the consent date re-derives the age on DM: not a listed item, nothing dropped
        consent(session, zm001, subject, ICDAT="2026-01-04")
        again = {"IG.DM": {1: {**DEMOGRAPHICS, "RACE": "WHITE"}}}
        factories.save(session, zm001, subject, "F.DM", again, complete=True, reason="typo")
        assert state(session, zm001, subject, DM) == SdvState.VERIFIED
        sex = {"IG.DM": {1: {**DEMOGRAPHICS, "RACE": "WHITE", "SEX": "M"}}}
        factories.save(session, zm001, subject, "F.DM", sex, complete=True, reason="typo")
        dm = form_sdv(session, zm001, subject, DM, "complete")
        assert dm.state == SdvState.DROPPED and [d.items for d in dm.dropped] == [("Sex",)]
        assert [row.item_oid for row in dm.verified] == ["IT.DM.BRTHDAT"]
        verify(session, zm001, subject, DM)  # only SEX is verified again
        assert state(session, zm001, subject, DM) == SdvState.VERIFIED


def test_a_freeze_lets_verification_go_on_and_a_lock_stops_it(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        consent(session, zm001, subject)
        place = {"event_oid": "SE.SCR", "event_repeat": 1, "form_oid": "F.IC", "form_repeat": 1}
        freeze = DataLockSet(pk(subject), "freeze", "interim review", **place)
        factories.apply(session, zm001, freeze, by="datamanager")
        verify(session, zm001, subject, IC)
        factories.apply(
            session, zm001, DataLockSet(pk(subject), "lock", "database lock"), by="datamanager"
        )
        with pytest.raises(DataLocked, match="This subject's casebook is locked"):
            factories.apply(
                session, zm001, WithdrawVerification(pk(subject), IC, "mistake"), by="monitor"
            )
        assert state(session, zm001, subject, IC) == SdvState.VERIFIED


def test_the_monitor_verifies_on_the_form_page_and_sees_drops_on_the_sdv_page(
    app_server: InProcessServer, demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        consent(session, zm001, subject)
        elsewhere = factories.register(session, zm001, site_id=3, by="coordinator3")
        consent(session, zm001, elsewhere, by="coordinator3")
    form = f"/subjects/{subject.id}/events/SE.SCR/1/forms/F.IC/1"
    monitor = logged_in_client(app_server, "monitor")
    page = monitor.get(form)
    assert "Source data verification" in page.text and "<strong>Due</strong>" in page.text
    posted = monitor.post(
        form + "/verify", data={"csrftoken": csrf_token(monitor, form), "version": "1"}
    )
    assert posted.status_code == 303
    page = monitor.get(form)
    assert "<strong>Verified</strong> by" in page.text and "(version 1)" in page.text
    assert "verified</span>" in monitor.get(f"/subjects/{subject.id}").text

    coordinator = logged_in_client(app_server, "coordinator")
    assert "Source data verification" not in coordinator.get(form).text
    refused = coordinator.post(
        form + "/verify", data={"csrftoken": csrf_token(coordinator, form), "version": "1"}
    )
    assert refused.status_code == 403
    assert coordinator.get("/sdv").status_code == 403
    assert "verification dropped" not in coordinator.get(f"/subjects/{subject.id}").text
    with Session(demo_engine, expire_on_commit=False) as session:
        consent(session, zm001, subject, ICDAT="2026-01-04")

    listing = monitor.get("/sdv")
    assert listing.status_code == 200
    assert "verification dropped: Date main ICF signed changed by" in listing.text
    assert subject.subject_key in listing.text and elsewhere.subject_key not in listing.text
    assert "03 ·" not in listing.text  # the monitor's sites are 01 and 02
    assert "verification dropped" in monitor.get(f"/subjects/{subject.id}").text
    only_02 = monitor.get("/sdv", params={"site": "02"})
    assert subject.subject_key not in only_02.text
    page = monitor.get(form)
    assert "<strong>Verification dropped</strong>" in page.text
    other = f"/subjects/{elsewhere.id}/events/SE.SCR/1/forms/F.IC/1"
    refused = monitor.post(
        other + "/verify", data={"csrftoken": csrf_token(monitor, form), "version": "1"}
    )
    assert refused.status_code == 404


def test_a_value_recalculated_from_another_form_drops_that_forms_verification(
    demo_engine: Engine, zm001: Study
) -> None:
    assert zm001.sdv is not None
    whole = replace(zm001, sdv=zm001.sdv.model_copy(update={"items": {}}))  # DM verified whole
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, whole)
        consent(session, whole, subject)
        rows = {"IG.DM": {1: DEMOGRAPHICS}}
        assert factories.save(session, whole, subject, "F.DM", rows, complete=True).saved
        verify(session, whole, subject, DM)
        consent(session, whole, subject, ICDAT="2025-01-04")  # a year earlier: AGE changes
        dm = form_sdv(session, whole, subject, DM, "complete")
        assert dm.state == SdvState.DROPPED and [d.items for d in dm.dropped] == [
            ("Age at consent",)
        ]
