"""Who may do what, and at which sites. The permission table is the single source of truth;
every page and endpoint asks `require` (or `can`) before acting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app.models import Role, RoleAssignment, UserAccount


class Permission(StrEnum):
    VIEW_SUBJECTS = "view_subjects"
    REGISTER_SUBJECT = "register_subject"
    ENTER_DATA = "enter_data"
    VIEW_AUDIT = "view_audit"
    EXPORT = "export"
    ADMINISTER = "administer"
    MANAGE_OWN_TOKENS = "manage_own_tokens"
    CHANGE_STATUS = "change_status"
    ENROL = "enrol"
    IMPORT = "import"
    MANAGE_QUERIES = "manage_queries"
    ANSWER_QUERIES = "answer_queries"
    RUN_CHECKS = "run_checks"
    LOCK_DATA = "lock_data"
    VERIFY_DATA = "verify_data"
    SIGN = "sign"
    VIEW_ESCALATION = "view_escalation"
    RECORD_BOARD_DECISION = "record_board_decision"


PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.VIEW_SUBJECTS: frozenset(Role) - {Role.ADMIN},
    Permission.REGISTER_SUBJECT: frozenset({Role.INVESTIGATOR, Role.COORDINATOR}),
    Permission.ENTER_DATA: frozenset({Role.INVESTIGATOR, Role.COORDINATOR}),
    Permission.VIEW_AUDIT: frozenset(Role) - {Role.ADMIN},
    Permission.EXPORT: frozenset({Role.DATA_MANAGER, Role.SPONSOR}),
    Permission.ADMINISTER: frozenset({Role.ADMIN}),
    Permission.MANAGE_OWN_TOKENS: frozenset(Role),
    Permission.CHANGE_STATUS: frozenset({Role.INVESTIGATOR, Role.COORDINATOR}),
    Permission.ENROL: frozenset({Role.INVESTIGATOR}),
    Permission.IMPORT: frozenset({Role.DATA_MANAGER, Role.ADMIN}),
    Permission.MANAGE_QUERIES: frozenset({Role.DATA_MANAGER, Role.MONITOR}),
    Permission.ANSWER_QUERIES: frozenset({Role.INVESTIGATOR, Role.COORDINATOR}),
    Permission.RUN_CHECKS: frozenset({Role.DATA_MANAGER}),
    Permission.LOCK_DATA: frozenset({Role.DATA_MANAGER}),
    Permission.VERIFY_DATA: frozenset({Role.MONITOR}),
    Permission.SIGN: frozenset({Role.INVESTIGATOR}),
    Permission.VIEW_ESCALATION: frozenset(
        {Role.INVESTIGATOR, Role.DATA_MANAGER, Role.SPONSOR, Role.MONITOR}
    ),
    Permission.RECORD_BOARD_DECISION: frozenset({Role.SPONSOR}),
}
"""Permission -> roles that hold it. Site roles act at their sites only."""

STUDY_WIDE_ROLES = frozenset({Role.DATA_MANAGER, Role.SPONSOR, Role.ADMIN})

ROLE_LABELS: dict[Role, str] = {
    Role.INVESTIGATOR: "Investigator",
    Role.COORDINATOR: "Coordinator",
    Role.MONITOR: "Monitor",
    Role.DATA_MANAGER: "Data manager",
    Role.SPONSOR: "Sponsor",
    Role.ADMIN: "Administrator",
}
"""What pages call each role; the stored names (`data_manager`) are for data and the API."""


_LABEL_OF_NAME = {role.value: label for role, label in ROLE_LABELS.items()}


def role_label(role: str) -> str:
    """A role's name for people ("Data manager"); text that is not a role comes back as is."""
    return _LABEL_OF_NAME.get(role, role)


def _spelling(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


_ROLE_SPELLINGS = {_spelling(text): role for role in Role for text in (role, ROLE_LABELS[role])}


def parse_role(text: str) -> Role:
    """The role someone typed: its name or label in any case, words joined by `_`, `-` or
    spaces ("data_manager", "Data-Manager", "data manager"); ValueError names the roles."""
    role = _ROLE_SPELLINGS.get(_spelling(text))
    if role is None:
        names = ", ".join(ROLE_LABELS[r].lower() for r in Role)
        raise ValueError(f"unknown role {text!r}; roles: {names}")
    return role


class AccessDenied(Exception):
    """The user lacks a permission; the message names it."""


@dataclass(frozen=True)
class Access:
    """A user's roles in one study: per site of the study, and study-wide (the
    administrator's role, which belongs to no study, counts as study-wide in every study).
    `study_id` is None outside any study (choosing one, one's own API tokens)."""

    user: UserAccount
    site_roles: dict[int, frozenset[Role]]
    study_roles: frozenset[Role]
    study_id: int | None = None

    def can(self, permission: Permission, site_id: int | None = None) -> bool:
        allowed = PERMISSIONS[permission]
        if self.study_roles & allowed:
            return True
        if site_id is None:
            return any(roles & allowed for roles in self.site_roles.values())
        return bool(self.site_roles.get(site_id, frozenset()) & allowed)

    def require(self, permission: Permission, site_id: int | None = None) -> None:
        if not self.can(permission, site_id):
            raise AccessDenied(f"your roles do not allow: {permission.value.replace('_', ' ')}")

    def site_ids(self, permission: Permission) -> set[int] | None:
        """Sites where the user holds `permission`; None means every site."""
        allowed = PERMISSIONS[permission]
        if self.study_roles & allowed:
            return None
        return {site for site, roles in self.site_roles.items() if roles & allowed}

    @property
    def roles(self) -> frozenset[Role]:
        return self.study_roles.union(*self.site_roles.values())


_ROLE_ASSIGNMENTS = select(
    RoleAssignment.role, RoleAssignment.study_id, RoleAssignment.site_id
).where(col(RoleAssignment.user_id) == bindparam("user_id"))
"""Built once: every request runs it."""

Assignment = tuple[str, int | None, int | None]
"""(role, study id or None for the whole instance, site id or None for study-wide)."""


def load_access(session: Session, user: UserAccount, study_id: int | None) -> Access:
    """The user's access in the study `study_id` (None: outside any study)."""
    assignments = session.exec(_ROLE_ASSIGNMENTS, params={"user_id": user.id})
    return access_of(user, assignments, study_id)


def access_of(user: UserAccount, assignments: Iterable[Assignment], study_id: int | None) -> Access:
    """A user's Access in one study from all their role assignments."""
    site_roles: dict[int, set[Role]] = {}
    study_roles: set[Role] = set()
    for name, assigned_study, site_id in assignments:
        if assigned_study is not None and assigned_study != study_id:
            continue
        role = Role(name)
        if site_id is None:
            study_roles.add(role)
        else:
            site_roles.setdefault(site_id, set()).add(role)
    return Access(
        user=user,
        site_roles={site: frozenset(roles) for site, roles in site_roles.items()},
        study_roles=frozenset(study_roles),
        study_id=study_id,
    )


def studies_of(assignments: Iterable[Assignment], all_studies: Iterable[int]) -> list[int]:
    """The studies a user works in: those their roles name, or every study for a role of
    the whole instance (the administrator)."""
    named = {study for _, study, _ in assignments}
    return sorted(all_studies) if None in named else sorted(s for s in named if s is not None)


def assignments_of(session: Session, user: UserAccount) -> list[Assignment]:
    return list(session.exec(_ROLE_ASSIGNMENTS, params={"user_id": user.id}))
