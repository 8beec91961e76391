"""Administration: sites, accounts and role assignments. Each function audits; the caller
commits (one administrative action is one unit of work)."""

from __future__ import annotations

import re

from sqlmodel import Session, col, select

from app import audit
from app.access import STUDY_WIDE_ROLES, Access, Permission, role_label
from app.audit import AuditAction
from app.models import Role, RoleAssignment, Site, UserAccount
from app.site_time import check_time_zone


class AdminRefused(ValueError):
    """An administrative change that cannot be made; the message says why."""


def list_sites(session: Session, study_id: int | None) -> list[Site]:
    """The sites of a study."""
    statement = select(Site).where(Site.study_id == study_id).order_by(col(Site.number))
    return list(session.exec(statement))


def create_site(
    session: Session, *, access: Access, number: str, name: str, time_zone: str
) -> Site:
    """A new site of the access's study; its IANA time zone decides the site's "today"
    (future dates, windows)."""
    access.require(Permission.ADMINISTER)
    assert access.study_id is not None, "a site belongs to a study"
    number, name = number.strip(), name.strip()
    try:
        check_time_zone(time_zone)
    except ValueError as error:
        raise AdminRefused(str(error)) from error
    if not re.fullmatch(r"\d{2,4}", number):
        raise AdminRefused("a site number is 2 to 4 digits; it prefixes screening numbers")
    if not name:
        raise AdminRefused("give the site a name")
    taken = select(Site).where(Site.study_id == access.study_id, Site.number == number)
    if session.exec(taken).first():
        raise AdminRefused(f"site number {number} is taken in this study")
    site = Site(
        study_id=access.study_id, oid=f"SITE.{number}", number=number, name=name[:200],
        time_zone=time_zone,
    )  # fmt: skip
    session.add(site)
    audit.record(
        session,
        actor=audit.Actor(access.user),
        study_id=access.study_id,
        action=AuditAction.SITE_CREATE,
        details=f"{number} {name} ({time_zone})"[:500],
    )
    session.flush()
    return site


def list_users(
    session: Session, study_id: int | None
) -> list[tuple[UserAccount, list[RoleAssignment]]]:
    """Every account, with its roles in the study `study_id` and of the whole instance."""
    users = session.exec(select(UserAccount).order_by(col(UserAccount.username))).all()
    assignments = session.exec(
        select(RoleAssignment).where(
            (col(RoleAssignment.study_id) == study_id) | col(RoleAssignment.study_id).is_(None)
        )
    ).all()
    return [(user, [a for a in assignments if a.user_id == user.id]) for user in users]


def grant_role(
    session: Session, *, access: Access, user_id: int, role: Role, site_id: int | None
) -> None:
    """Give a user a role in the access's study, at one of its sites or study-wide (data
    manager, sponsor); the administrator's role is for the whole instance."""
    access.require(Permission.ADMINISTER)
    user = session.get(UserAccount, user_id)
    if user is None:
        raise AdminRefused(f"no user {user_id}")
    if site_id is None and role not in STUDY_WIDE_ROLES:
        raise AdminRefused(f"{role_label(role)} is a site role: choose a site")
    site = session.get(Site, site_id) if site_id is not None else None
    if site_id is not None and (site is None or site.study_id != access.study_id):
        raise AdminRefused(f"no site {site_id} in this study")
    study_id = None if role == Role.ADMIN else access.study_id
    exists = session.exec(
        select(RoleAssignment).where(
            RoleAssignment.user_id == user_id,
            RoleAssignment.role == role,
            RoleAssignment.study_id == study_id,
            RoleAssignment.site_id == site_id,
        )
    ).first()
    if exists:
        raise AdminRefused(f"{user.username} is already {role_label(role).lower()} there")
    session.add(RoleAssignment(user_id=user_id, role=role, study_id=study_id, site_id=site_id))
    audit.record(session, actor=audit.Actor(access.user), action=AuditAction.ROLE_GRANT,
                 study_id=study_id,
                 details=f"{user.username}: {role.value} {_scope(site_id)}")  # fmt: skip


def revoke_role(session: Session, *, access: Access, assignment_id: int) -> None:
    access.require(Permission.ADMINISTER)
    assignment = session.get(RoleAssignment, assignment_id)
    if assignment is None or assignment.study_id not in (access.study_id, None):
        raise AdminRefused(f"no role assignment {assignment_id} in this study")
    user = session.get(UserAccount, assignment.user_id)
    if user is not None and user.id == access.user.id and assignment.role == Role.ADMIN:
        raise AdminRefused("you cannot remove your own administrator role")
    session.delete(assignment)
    audit.record(session, actor=audit.Actor(access.user), action=AuditAction.ROLE_REVOKE,
                 details=f"{user.username if user else '?'}: {assignment.role} {_scope(assignment.site_id)}")  # fmt: skip


def set_active(session: Session, *, access: Access, user_id: int, active: bool) -> None:
    """Deactivate (or reactivate) an account; deactivated users cannot log in or use tokens."""
    access.require(Permission.ADMINISTER)
    user = session.get(UserAccount, user_id)
    if user is None:
        raise AdminRefused(f"no user {user_id}")
    if user.id == access.user.id:
        raise AdminRefused("you cannot deactivate your own account")
    user.is_active = active
    session.add(user)
    action = AuditAction.USER_ACTIVATE if active else AuditAction.USER_DEACTIVATE
    audit.record(session, actor=audit.Actor(access.user), action=action, details=user.username)


def _scope(site_id: int | None) -> str:
    return f"at site {site_id}" if site_id else "study-wide"
