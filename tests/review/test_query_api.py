"""The query API: open, list, read with history, answer and close, with the pages' role and
site rules (both databases)."""

from __future__ import annotations

from sqlmodel import Session

from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer

QUERIES = "/api/v1/studies/ZM001/queries"


def test_a_query_is_raised_answered_and_closed_through_the_api(
    app_server: InProcessServer, zm001: Study
) -> None:
    engine = app_server.app.fastapi.state.engine
    with Session(engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        tokens = {
            who: factories.api_token(session, who)
            for who in ("monitor", "coordinator", "coordinator2")
        }

    def api(who: str):  # type: ignore[no-untyped-def]
        return app_server.client(headers={"Authorization": f"Bearer {tokens[who]}"})

    item = {
        "subject_id": subject.id, "event_oid": "SE.SCR", "form_oid": "F.IC", "form_repeat": 1,
        "item_group_oid": "IG.IC", "group_repeat": 1, "item_oid": "IT.IC.ICDAT",
        "text": "Please confirm the consent date.",
    }  # fmt: skip
    assert api("coordinator").post(QUERIES, json=item).status_code == 403
    opened = api("monitor").post(QUERIES, json=item)
    assert opened.status_code == 201, opened.text
    query = opened.json()
    assert (query["state"], query["who_acts"], query["check_id"], query["version"]) == (
        "open",
        "site",
        None,
        1,
    )
    assert [e["action"] for e in query["history"]] == ["query_open"]
    path = f"{QUERIES}/{query['id']}"

    assert api("coordinator2").get(path).status_code == 404  # another site's subject
    assert api("coordinator2").get(QUERIES).json() == []
    assert [q["id"] for q in api("coordinator").get(QUERIES, params={"who": "site"}).json()] == [
        query["id"]
    ]

    answer = {"action": "answer", "version": 1, "text": "Confirmed against the ICF."}
    answered = api("coordinator").post(path, json=answer)
    assert answered.status_code == 200 and answered.json()["state"] == "answered"
    stale = api("monitor").post(path, json={"action": "close", "version": 1})
    assert stale.status_code == 409 and "Someone else changed this query" in stale.json()["detail"]
    refused = api("monitor").post(path, json={"action": "answer", "version": 2, "text": "x"})
    assert refused.status_code == 403
    closed = api("monitor").post(path, json={"action": "close", "version": 2})
    assert closed.status_code == 200
    final = api("monitor").get(path).json()
    assert final["state"] == "closed" and final["response"] == "Confirmed against the ICF."
    assert [(e["by"], e["new_state"]) for e in final["history"]] == [
        ("monitor", "open"),
        ("coordinator", "answered"),
        ("monitor", "closed"),
    ]
