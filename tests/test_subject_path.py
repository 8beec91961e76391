"""The subject's path: status changes in order, only when the casebook supports them, dated,
audited, and by the roles allowed (through the API, on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.crf import reads
from app.crf.changes import StatusRefused
from app.demo import SCENARIOS, load_demo
from app.demo_escalation import volume_study
from app.exporters.scope import ExportScope, ScopeKind
from app.models import AuditRecord, Subject, pk, utcnow
from app.sdtm.build import write_sdtm
from app.sdtm.rules import read_written
from app.sdtm.spec import load_sdtm_specs
from app.study.loader import Study
from tests import factories
from tests.conftest import EXPORTS, InProcessServer
from tests.test_api import api_client, new_subject

FORM = "/api/v1/studies/ZM001/subjects/{id}/events/{event}/1/forms/{form}/1"


def put_form(
    client: httpx.Client,
    subject: int,
    event: str,
    form: str,
    values: dict,
    *,
    version: int = 0,
    complete: bool = True,
    reason: str | None = None,
) -> httpx.Response:
    body = {"version": version, "values": values, "complete": complete}
    if reason:
        body["reason"] = reason
    return client.put(FORM.format(id=subject, event=event, form=form), json=body)


def eligibility(failed: str | None = None, investigator_says: str = "Y") -> dict:
    """IE values: inclusion rows 1-11 met, exclusion rows 12-24 absent, except `failed`."""
    rows = {str(n): {"IEORRES": "Y" if n <= 11 else "N"} for n in range(1, 25)}
    if failed is not None:
        rows[failed] = {"IEORRES": "N" if int(failed) <= 11 else "Y"}
    header = {"ELIGYN": investigator_says}
    if investigator_says == "Y":
        header["ENRLDAT"] = "2026-04-02"
    return {"IG.IE.IECRIT": rows, "IG.IE": {"1": header}}


def change(client: httpx.Client, subject: int, to: str, **extra: str) -> httpx.Response:
    return client.post(
        f"/api/v1/studies/ZM001/subjects/{subject}/status",
        json={"to": to, "effective": "2026-04-02", **extra},
    )


def test_enrolment_needs_consent_and_eligibility_and_an_investigator(
    app_server: InProcessServer,
) -> None:
    coordinator = api_client(app_server, "coordinator")
    investigator = api_client(app_server, "investigator")
    subject = new_subject(coordinator)

    refused = change(investigator, subject, "enrolled", dose_level="DL1", phase="ESCALATION")
    assert refused.status_code == 422
    assert "The informed consent form must be complete." in refused.json()["detail"]
    assert "The eligibility form must be complete." in refused.json()["detail"]

    consent = {"IG.IC": {"1": {"ICVER": "2.0", "ICDAT": "2026-04-01", "ICLTFU": "Y"}}}
    assert put_form(coordinator, subject, "SE.SCR", "F.IC", consent).status_code == 200
    failed = put_form(coordinator, subject, "SE.SCR", "F.IE", eligibility(failed="4"))
    assert failed.status_code == 200, failed.text
    refused = change(investigator, subject, "enrolled", dose_level="DL1", phase="ESCALATION")
    assert "Every inclusion criterion must be met" in refused.json()["detail"]
    assert "investigator's eligibility answer differs" in refused.json()["detail"]

    corrected = put_form(
        coordinator,
        subject,
        "SE.SCR",
        "F.IE",
        eligibility(),
        version=1,
        reason="IN04: SLEDAI-2K recalculated as 9",
    )
    assert corrected.status_code == 200, corrected.text
    assert (
        change(coordinator, subject, "enrolled", dose_level="DL1", phase="ESCALATION").status_code
        == 403
    )
    assert (
        change(investigator, subject, "enrolled", dose_level="DL9", phase="ESCALATION").status_code
        == 422
    )
    enrolled = change(investigator, subject, "enrolled", dose_level="DL1", phase="ESCALATION")
    assert enrolled.status_code == 200, enrolled.text
    assert (enrolled.json()["status"], enrolled.json()["dose_level"]) == ("enrolled", "DL1")
    assert enrolled.json()["status_date"] == "2026-04-02"

    out_of_order = change(coordinator, subject, "infused")
    assert out_of_order.status_code == 422
    assert "cannot move to infused" in out_of_order.json()["detail"]
    blocked = change(coordinator, subject, "leukapheresed")
    assert "leukapheresis form must record a performed collection" in blocked.json()["detail"]

    with Session(app_server.app.fastapi.state.engine) as session:
        record = session.exec(
            select(AuditRecord).where(AuditRecord.action == "subject_status")
        ).one()
    assert (record.old_value, record.new_value, record.username) == (
        "screening",
        "enrolled",
        "investigator",
    )
    assert record.context == {
        "effective": "2026-04-02", "dose_level": "DL1", "phase": "ESCALATION"
    }  # fmt: skip


def test_a_future_date_and_a_final_status_are_refused(app_server: InProcessServer) -> None:
    coordinator = api_client(app_server, "coordinator")
    subject = new_subject(coordinator)
    put_form(coordinator, subject, "SE.SCR", "F.IE", eligibility(failed="2", investigator_says="N"))
    future = coordinator.post(
        f"/api/v1/studies/ZM001/subjects/{subject}/status",
        json={"to": "screen_failed", "effective": "2999-01-01"},
    )
    assert future.status_code == 422 and "future" in future.json()["detail"]
    assert change(coordinator, subject, "screen_failed").status_code == 200
    again = change(coordinator, subject, "enrolled")
    assert (
        again.status_code == 422
        and "screen failed cannot move to enrolled" in again.json()["detail"]
    )


def test_visit_targets_windows_states_and_study_days(app_server: InProcessServer) -> None:
    coordinator = api_client(app_server, "coordinator")
    subject = new_subject(coordinator)
    infusion = {"IG.EX": {"1": {"EXSTDTM": "2026-01-10T09:30"}}}
    saved = put_form(coordinator, subject, "SE.D0", "F.EX", infusion, complete=False)
    assert saved.status_code == 200, saved.text
    late = coordinator.put(
        f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.D7/1",
        json={"visit_date": "2026-01-20"},
    )
    assert late.status_code == 200, late.text
    d7 = late.json()
    assert (d7["target"], d7["earliest"], d7["latest"]) == (
        "2026-01-17",
        "2026-01-16",
        "2026-01-18",
    )
    assert (d7["state"], d7["study_day"]) == ("out_of_window", 10)
    corrected = coordinator.put(
        f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.D7/1",
        json={"visit_date": "2026-01-17"},
    )
    assert corrected.status_code == 422 and "reason" in corrected.json()["detail"]
    corrected = coordinator.put(
        f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.D7/1",
        json={"visit_date": "2026-01-17", "reason": "typo"},
    )
    assert corrected.json()["state"] == "in_window"
    visits = {
        (v["event_oid"], v["repeat"]): v
        for v in coordinator.get(f"/api/v1/studies/ZM001/subjects/{subject}").json()["visits"]
    }
    assert visits[("SE.D1", 1)]["state"] == "overdue"
    assert visits[("SE.BL", 1)]["target"] == "2026-01-03"
    assert visits[("SE.SCR", 1)]["state"] == ""  # timed from leukapheresis, not known yet
    unscheduled = coordinator.put(
        f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.UNS/1",
        json={"visit_date": "2026-01-12"},
    )
    assert unscheduled.status_code == 200 and unscheduled.json()["study_day"] == 2
    assert (
        coordinator.put(
            f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.D7/2",
            json={"visit_date": "2026-01-12"},
        ).status_code
        == 404
    )


def test_the_infusion_is_recorded_only_at_the_dose_level_assigned_at_enrolment(
    engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    """One source of the planned arm: the level assigned at enrolment (eligibility asks none);
    the escalation refuses an infusion form naming a level it has not opened, one naming
    another level cannot move the subject to infused, and SDTM's
    actual arm comes from the infusion that was accepted."""
    lymphodepleted = next(i for i, s in enumerate(SCENARIOS) if s.stage == "lymphodepleted")
    load_demo(engine, zm001, subjects=lymphodepleted + 1)  # the last built, at DL3, in expansion
    with Session(engine, expire_on_commit=False) as session:
        subject = session.exec(select(Subject).where(Subject.status == "lymphodepleted")).one()
        assert (subject.dose_level, subject.phase) == ("DL3", "EXPANSION")
        day = reads.site_today(session, subject, utcnow())
        factories.date_visit(session, zm001, subject, "SE.D0", day, by="coordinator2")
        lot = reads.SubjectValues(session, zm001, subject).values({"PROD"})["PROD"]["LOTNUM"]
        infusion = {
            "PRECHK": "Y", "DOSELVL": "DL2", "EXDOSE": "48.0", "EXLOT": lot, "EXBAGN": "1",
            "EXVOL": "60.0", "THAWDTM": f"{day}T09:30", "EXSTDTM": f"{day}T10:00",
            "EXENDTM": f"{day}T10:15", "EXCOMP": "Y", "EXINTYN": "N", "PREMEDYN": "Y",
            "IRRYN": "N",
        }  # fmt: skip
        gated = factories.save(
            session, zm001, subject, "F.EX", {"IG.EX": {1: infusion}}, event="SE.D0",
            complete=True, by="coordinator2",
        )  # fmt: skip
        assert not gated.saved
        assert "DL2 is not a level the board selected for expansion" in str(gated.evaluation.errors)
        # Without the escalation's gates (as on a study without a casebook), the subject
        # path still holds: the form saves, the move to infused does not.
        ungated = volume_study(zm001)
        saved = factories.save(
            session, ungated, subject, "F.EX", {"IG.EX": {1: infusion}}, event="SE.D0",
            complete=True, by="coordinator2",
        )  # fmt: skip
        assert saved.saved, saved.evaluation.errors
        with pytest.raises(StatusRefused, match=r"assigned at enrolment \(EC024\)"):
            factories.move(session, zm001, subject, "infused", day, by="investigator2")
        session.refresh(subject)
        assert subject.status == "lymphodepleted"

        right = infusion | {"DOSELVL": "DL3", "EXDOSE": "98.0"}  # 48.0 would be DL2's arm
        corrected = factories.save(
            session, zm001, subject, "F.EX", {"IG.EX": {1: right}},
            event="SE.D0", complete=True, reason="Dose level transcribed wrongly",
            by="coordinator2",
        )  # fmt: skip
        assert corrected.saved, corrected.evaluation.errors
        factories.move(session, zm001, subject, "infused", day, by="investigator2")
        scope = ExportScope(study_id=zm001.id, kind=ScopeKind.SUBJECT, subject_id=pk(subject))
        specs = load_sdtm_specs(EXPORTS, zm001)
        datasets = write_sdtm(session, zm001, specs, tmp_path, scope, frozenset({"csv"}))
    columns, (dm,) = read_written(next(d for d in datasets if d.name == "DM"))
    arms = dict(zip(columns, dm, strict=True))
    assert (arms["ARMCD"], arms["ACTARMCD"], arms["ARMNRS"]) == ("DL3-EXP", "DL3-EXP", None)
