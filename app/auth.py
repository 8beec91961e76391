"""Accounts, passwords (argon2) and login sessions kept in the database.

A session cookie carries a random token; the database keeps only its SHA-256, so a copy of
the database cannot be used to log in. Sessions expire after the configured idle time.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app import audit
from app.access import Assignment
from app.audit import AuditAction
from app.models import ApiToken, LoginSession, Role, RoleAssignment, UserAccount, pk, utcnow

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()


def use_cheap_password_hashing() -> None:
    """Hash new passwords with argon2's cheapest parameters: for tests only, which create
    hundreds of accounts. Verifying reads the parameters from each stored hash."""
    global _hasher
    _hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that both cases take the same time.
    Computed at the first such login, not at import: every command imports this module."""
    return _hasher.hash("not-a-real-password")


class LoginFailed(Exception):
    """Wrong username or password, or a locked account; the message is safe to show."""


class WeakPassword(ValueError):
    """A password that does not meet the policy; the message says why."""


def check_password_policy(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if username.lower() in password.lower():
        raise WeakPassword("a password must not contain the username")
    kinds = [any(c.isalpha() for c in password), any(c.isdigit() for c in password)]
    if not all(kinds):
        raise WeakPassword("a password needs both letters and digits")


def create_user(
    session: Session,
    *,
    username: str,
    full_name: str,
    password: str,
    roles: list[tuple[Role, int | None, int | None]],
    actor: audit.Actor,
    given_name: str | None = None,
    family_name: str | None = None,
) -> UserAccount:
    """Create an account with roles ((role, study id, site id): a study of None is the whole
    instance, a site of None study-wide); audited. The caller commits."""
    check_password_policy(password, username)
    if session.exec(select(UserAccount).where(UserAccount.username == username)).first():
        raise ValueError(f"user {username} already exists")
    user = UserAccount(
        username=username,
        full_name=full_name,
        given_name=given_name or None,
        family_name=family_name or None,
        password_hash=_hasher.hash(password),
    )
    session.add(user)
    session.flush()
    for role, study_id, site_id in roles:
        session.add(RoleAssignment(user_id=pk(user), role=role, study_id=study_id, site_id=site_id))
        scope = f"site {site_id}" if site_id else "study-wide" if study_id else "every study"
        audit.record(
            session, actor=actor, action=AuditAction.ROLE_GRANT, study_id=study_id,
            details=f"{username}: {role} {scope}",
        )  # fmt: skip
    audit.record(session, actor=actor, action=AuditAction.USER_CREATE, details=username)
    session.flush()
    return user


def login(session: Session, *, username: str, password: str, source: str, now: datetime) -> str:
    """Check credentials and open a session; returns the cookie token. Audited; the caller
    commits, a failed attempt too (its audit record and the failure counter).

    Raises LoginFailed with one message for unknown users and wrong passwords alike.
    """
    user = session.exec(select(UserAccount).where(UserAccount.username == username)).first()
    if user is None:
        _verify(_dummy_hash(), password)
        audit.record(
            session, actor=audit.Actor(None, source), action=AuditAction.LOGIN_FAILED,
            details=username,
        )  # fmt: skip
        raise LoginFailed("Unknown username or wrong password.")
    actor = audit.Actor(user, source)
    if is_locked(user, now):
        audit.record(
            session, actor=actor, action=AuditAction.LOGIN_FAILED, details="account locked"
        )
        raise LoginFailed("This account is locked after repeated failed logins; try later.")
    if not user.is_active or not _verify(user.password_hash, password):
        details = count_failure(session, user, now)
        audit.record(session, actor=actor, action=AuditAction.LOGIN_FAILED, details=details)
        raise LoginFailed("Unknown username or wrong password.")
    user.failed_logins = 0
    user.locked_until = None
    token = secrets.token_urlsafe(32)
    session.add(
        LoginSession(id=_token_hash(token), user_id=pk(user), created_at=now, last_seen_at=now)
    )
    audit.record(session, actor=actor, action=AuditAction.LOGIN)
    session.add(user)
    return token


def count_failure(session: Session, user: UserAccount, now: datetime) -> str:
    """Count a wrong password of `user` (at login, or when signing): the MAX_FAILED_LOGINS-th
    locks the account for LOCKOUT. Returns what to audit; the caller commits."""
    user.failed_logins += 1
    details = "wrong password"
    if user.failed_logins >= MAX_FAILED_LOGINS:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0
        details = "wrong password; account locked"
    session.add(user)
    return details


def is_locked(user: UserAccount, now: datetime) -> bool:
    """Whether the account is locked after repeated wrong passwords."""
    return user.locked_until is not None and user.locked_until > now


def verify_password(user: UserAccount, password: str) -> bool:
    """Whether `password` is the active account's password (argon2)."""
    return user.is_active and _verify(user.password_hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_user(
    session: Session, *, token: str, idle: timedelta, now: datetime
) -> tuple[UserAccount, LoginSession] | None:
    """The user of a live session and the session (with the study chosen in it), refreshing
    its idle timer (the caller commits); None when absent or expired (an expired session is
    ended)."""
    login_session = session.get(LoginSession, _token_hash(token))
    if login_session is None or login_session.ended_at is not None:
        return None
    if now - login_session.last_seen_at > idle:
        login_session.ended_at = now
        session.add(login_session)
        return None
    user = session.get(UserAccount, login_session.user_id)
    if user is None or not user.is_active:
        return None
    if now - login_session.last_seen_at > timedelta(seconds=30):  # limit writes per request
        login_session.last_seen_at = now
        session.add(login_session)
    return user, login_session


def login_session_of(session: Session, token: str) -> LoginSession | None:
    """The login session a cookie token opened (live or not), without touching it."""
    return session.get(LoginSession, _token_hash(token))


def choose_study(
    session: Session, *, login_session: LoginSession, study_id: int, now: datetime
) -> None:
    """Make `study_id` the study the session works in (audited); the caller has checked the
    user works in it, and commits."""
    login_session.study_id = study_id
    session.add(login_session)
    user = session.get(UserAccount, login_session.user_id)
    audit.record(
        session, actor=audit.Actor(user), action=AuditAction.STUDY_CHOSEN, study_id=study_id,
        at=now,
    )  # fmt: skip


def logout(session: Session, *, token: str, now: datetime) -> None:
    login_session = session.get(LoginSession, _token_hash(token))
    if login_session is not None and login_session.ended_at is None:
        login_session.ended_at = now
        user = session.get(UserAccount, login_session.user_id)
        audit.record(session, actor=audit.Actor(user), action=AuditAction.LOGOUT)
        session.add(login_session)


API_TOKEN_PREFIX = "td_"  # noqa: S105 - a prefix, not a secret


def create_api_token(
    session: Session, *, user: UserAccount, name: str, now: datetime
) -> tuple[ApiToken, str]:
    """A new personal API token for `user`; returns it with its secret (shown once). The
    caller commits."""
    name = name.strip()
    if not name:
        raise ValueError("give the token a name, e.g. the script that will use it")
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=pk(user), name=name[:80], token_hash=_token_hash(secret), created_at=now
    )
    session.add(token)
    audit.record(
        session, actor=audit.Actor(user), action=AuditAction.API_TOKEN_CREATE,
        details=name[:200], at=now,
    )  # fmt: skip
    session.flush()
    return token, secret


def list_api_tokens(session: Session, user: UserAccount) -> list[ApiToken]:
    statement = select(ApiToken).where(ApiToken.user_id == user.id).order_by(col(ApiToken.id))
    return list(session.exec(statement))


def revoke_api_token(session: Session, *, user: UserAccount, token_id: int, now: datetime) -> None:
    """Revoke one of the user's own tokens (audited); unknown or foreign ids raise LookupError."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise LookupError(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.add(token)
        audit.record(
            session, actor=audit.Actor(user), action=AuditAction.API_TOKEN_REVOKE,
            details=token.name, at=now,
        )  # fmt: skip


_TOKEN_USER_ROLES = (
    sa_select(
        ApiToken,
        UserAccount,
        col(RoleAssignment.role),
        col(RoleAssignment.study_id),
        col(RoleAssignment.site_id),
    )
    .join(UserAccount, col(UserAccount.id) == ApiToken.user_id)
    .outerjoin(RoleAssignment, col(RoleAssignment.user_id) == UserAccount.id)
    .where(col(ApiToken.token_hash) == bindparam("token_hash"))
)
"""One query, built once: every API request runs it (a row per role the user holds)."""


def token_user(
    session: Session, *, secret: str, now: datetime
) -> tuple[UserAccount, list[Assignment]] | None:
    """The active user of a live (not revoked) API token, with their role assignments, or
    None; notes when the token was last used (the caller commits)."""
    rows = session.execute(_TOKEN_USER_ROLES, {"token_hash": _token_hash(secret)}).all()
    if not rows:
        return None
    token, user = rows[0][0], rows[0][1]
    if token.revoked_at is not None or not user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
        session.add(token)
    return user, [(role, study, site) for _, _, role, study, site in rows if role is not None]


__all__ = [
    "LoginFailed",
    "WeakPassword",
    "create_user",
    "login",
    "logout",
    "session_user",
    "utcnow",
]
