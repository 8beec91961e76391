"""The menu of the page header: one list, from the permission table, so that every page shows
each user exactly the places they may open (and no link answers "Not allowed")."""

from __future__ import annotations

from dataclasses import dataclass

from app.access import Access, Permission


@dataclass(frozen=True)
class MenuLink:
    label: str
    href: str
    permission: Permission
    """Opening `href` needs this permission (at some site, for site roles)."""


MENU = (
    MenuLink("Subjects", "/subjects", Permission.VIEW_SUBJECTS),
    MenuLink("Queries", "/queries", Permission.VIEW_SUBJECTS),
    MenuLink("Dashboard", "/dashboard", Permission.VIEW_SUBJECTS),
    MenuLink("Escalation", "/escalation", Permission.VIEW_ESCALATION),
    MenuLink("Checks", "/checks", Permission.RUN_CHECKS),
    MenuLink("Locks", "/locks", Permission.LOCK_DATA),
    MenuLink("Verification", "/sdv", Permission.VERIFY_DATA),
    MenuLink("Administration", "/admin", Permission.ADMINISTER),
    MenuLink("Exports", "/exports", Permission.EXPORT),
    MenuLink("Import", "/admin/import", Permission.IMPORT),
    MenuLink("Studies", "/studies", Permission.MANAGE_OWN_TOKENS),
    MenuLink("API tokens", "/account/tokens", Permission.MANAGE_OWN_TOKENS),
)


def menu(access: Access) -> list[MenuLink]:
    """The links `access` may follow, in menu order."""
    return [link for link in MENU if access.can(link.permission)]


def home(access: Access) -> str | None:
    """A user's start page: the first place of their menu; None for an account without roles."""
    links = menu(access)
    return links[0].href if links else None
