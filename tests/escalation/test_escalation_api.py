"""The escalation's JSON API over HTTP with API tokens, on both databases: the state, the
levels in the simulator's shape, subjects by pseudonym only, signed board decisions; a
coordinator (no escalation permission) is refused."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from app.escalation.gates import DecisionKind
from app.study.loader import Study
from tests.conftest import InProcessServer
from tests.escalation.casebooks import infused
from tests.escalation.test_study_escalation import CLEARED, D0, decide
from tests.test_api import api_client

URL = "/api/v1/studies/ZM001/escalation"


def test_the_escalation_as_json(
    app_server: InProcessServer, demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        cohort = [infused(session, zm001, "DL1", D0 + timedelta(days=d)) for d in (0, 7, 8)]
        decide(session, zm001, DecisionKind.ESCALATE, ("DL2",), CLEARED)
    body = api_client(app_server, "datamanager").get(URL).json()
    assert body["recommendation"]["state"] == "ESCALATING"
    assert body["recommendation"]["level"] == "DL2"
    assert body["levels"]["DL1"] == {
        "status": "CLEARED", "infused": 3, "evaluable": 3, "dlt": 0, "pending": 0,
        "not_evaluable": 0,
    }  # fmt: skip
    assert [s["pseudonym"] for s in body["subjects"]] == ["DL1-1", "DL1-2", "DL1-3"]
    assert {s["outcome"] for s in body["subjects"]} == {"NO_DLT"}
    assert all(subject.subject_key not in str(body) for subject in cohort)
    [decision] = body["board_decisions"]
    assert (decision["kind"], decision["levels"], decision["signed_by"]) == (
        "escalate", ["DL2"], "Zhao Lei",
    )  # fmt: skip
    assert decision["rules_then"]["state"] == "ESCALATING"
    assert api_client(app_server, "coordinator").get(URL).status_code == 403
