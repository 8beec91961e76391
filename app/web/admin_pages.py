"""Administration pages: sites, accounts, role assignments (administrators only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import admin, audit, auth
from app.access import Access, Permission
from app.db import unit_of_work
from app.models import Role, pk
from app.site_time import time_zone_names
from app.web.deps import SessionDep, requires
from app.web.pages import render

router = APIRouter(prefix="/admin", include_in_schema=False, default_response_class=HTMLResponse)
AdminDep = Annotated[Access, requires(Permission.ADMINISTER)]
Id = Annotated[int, PathParam(ge=1, le=2**62)]


def _page(
    request: Request, session: SessionDep, access: Access, status: int = 200, **extra: object
) -> Response:
    context = {
        "access": access, "sites": admin.list_sites(session, access.study_id),
        "users": admin.list_users(session, access.study_id),
        "roles": list(Role), "time_zones": time_zone_names(), "error": None, "created": None,
        **extra,
    }  # fmt: skip
    return render(request, "admin.html", context, status)


@router.get("")
def admin_page(request: Request, session: SessionDep, access: AdminDep) -> Response:
    return _page(request, session, access)


@router.post("/sites")
def site_create(
    request: Request,
    session: SessionDep,
    access: AdminDep,
    number: Annotated[str, Form(max_length=4)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    time_zone: Annotated[str, Form(max_length=64)] = "UTC",
) -> Response:
    try:
        with unit_of_work(session):
            admin.create_site(session, access=access, number=number, name=name, time_zone=time_zone)
    except admin.AdminRefused as refusal:
        return _page(request, session, access, 422, error=f"Site not created: {refusal}")
    return RedirectResponse("/admin", status_code=303)


@router.post("/users")
def user_create(
    request: Request,
    session: SessionDep,
    access: AdminDep,
    username: Annotated[str, Form(max_length=80, pattern=r"^[a-z0-9._-]*$")] = "",
    full_name: Annotated[str, Form(max_length=200)] = "",
    given_name: Annotated[str, Form(max_length=100)] = "",
    family_name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[Role, Form()] = Role.COORDINATOR,
    site_id: Annotated[int | None, Form(ge=1, le=2**31)] = None,
) -> Response:
    try:
        if not username or not full_name.strip():
            raise ValueError("give a username and a full name")
        with unit_of_work(session):  # the account and its role, or neither
            user = auth.create_user(
                session, username=username, full_name=full_name.strip(), password=password,
                roles=[], actor=audit.Actor(access.user), given_name=given_name.strip(),
                family_name=family_name.strip(),
            )  # fmt: skip
            admin.grant_role(session, access=access, user_id=pk(user), role=role, site_id=site_id)
    except (ValueError, auth.WeakPassword) as refusal:
        return _page(request, session, access, 422, error=f"Account not created: {refusal}")
    return _page(request, session, access, created=username)


@router.post("/users/{user_id}/roles")
def role_grant(
    request: Request,
    session: SessionDep,
    access: AdminDep,
    user_id: Id,
    role: Annotated[Role, Form()],
    site_id: Annotated[int | None, Form(ge=1, le=2**31)] = None,
) -> Response:
    try:
        with unit_of_work(session):
            admin.grant_role(session, access=access, user_id=user_id, role=role, site_id=site_id)
    except admin.AdminRefused as refusal:
        return _page(request, session, access, 422, error=f"Role not granted: {refusal}")
    return RedirectResponse("/admin", status_code=303)


@router.post("/roles/{assignment_id}/revoke")
def role_revoke(
    request: Request, session: SessionDep, access: AdminDep, assignment_id: Id
) -> Response:
    try:
        with unit_of_work(session):
            admin.revoke_role(session, access=access, assignment_id=assignment_id)
    except admin.AdminRefused as refusal:
        return _page(request, session, access, 422, error=f"Role not removed: {refusal}")
    return RedirectResponse("/admin", status_code=303)


@router.post("/users/{user_id}/active")
def user_active(
    request: Request,
    session: SessionDep,
    access: AdminDep,
    user_id: Id,
    active: Annotated[bool, Form()] = False,
) -> Response:
    try:
        with unit_of_work(session):
            admin.set_active(session, access=access, user_id=user_id, active=active)
    except admin.AdminRefused as refusal:
        return _page(request, session, access, 422, error=str(refusal))
    return RedirectResponse("/admin", status_code=303)
