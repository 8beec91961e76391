"""Administration pages: sites, accounts, roles; every change audited."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.demo import DEMO_PASSWORD
from app.models import AuditRecord
from tests.conftest import InProcessServer, csrf_token, logged_in_client


def test_admin_creates_a_site_and_an_account_that_can_log_in(app_server: InProcessServer) -> None:
    admin = logged_in_client(app_server, "admin")
    assert admin.get("/").headers["location"] == "/admin"
    token = csrf_token(admin, "/admin")
    assert (
        admin.post(
            "/admin/sites",
            data={
                "number": "04",
                "name": "Wuhan Union (demo)",
                "time_zone": "Asia/Shanghai",
                "csrftoken": token,
            },
        ).status_code
        == 303
    )
    weak = admin.post(
        "/admin/users",
        data={
            "username": "nurse",
            "full_name": "Nurse Wu",
            "password": "short",
            "role": "coordinator",
            "site_id": "4",
            "csrftoken": token,
        },
    )
    assert weak.status_code == 422 and "at least 10 characters" in weak.text
    created = admin.post(
        "/admin/users",
        data={
            "username": "nurse",
            "full_name": "Nurse Wu",
            "password": "Lupus-2026-ok",
            "role": "coordinator",
            "site_id": "4",
            "csrftoken": token,
        },
    )
    assert created.status_code == 200 and "Account nurse created." in created.text
    nurse = logged_in_client(app_server, "nurse", password="Lupus-2026-ok")
    assert "Wuhan Union (demo)" in nurse.get("/subjects").text
    site_role = admin.post("/admin/users/1/roles", data={"role": "coordinator", "csrftoken": token})
    assert site_role.status_code == 422 and "is a site role: choose a site" in site_role.text
    with Session(app_server.app.fastapi.state.engine) as session:
        actions = session.exec(
            select(AuditRecord.action, AuditRecord.details).where(
                col(AuditRecord.username) == "admin"
            )
        ).all()
    assert ("site_create", "04 Wuhan Union (demo) (Asia/Shanghai)") in actions
    assert ("role_grant", "nurse: coordinator at site 4") in actions


def test_repeated_failed_logins_lock_the_account_and_are_audited(
    app_server: InProcessServer,
) -> None:

    client = app_server.client()
    token = csrf_token(client)
    for _ in range(5):
        client.post(
            "/login", data={"username": "monitor", "password": "wrong-guess-1", "csrftoken": token}
        )
    locked = client.post(
        "/login", data={"username": "monitor", "password": DEMO_PASSWORD, "csrftoken": token}
    )
    assert locked.status_code == 401 and "locked" in locked.text
    with Session(app_server.app.fastapi.state.engine) as session:
        failures = session.exec(
            select(AuditRecord.details).where(
                AuditRecord.action == "login_failed", AuditRecord.username == "monitor"
            )
        ).all()
    assert failures[-2:] == ["wrong password; account locked", "account locked"]
