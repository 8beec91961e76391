"""Demo data for trying TrialDesk: sites, one account per role, subjects with entered forms.

Everything goes through the same service functions as the pages, so it is audited like
real data entry.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from app import audit, auth
from app.access import load_access
from app.crf import service
from app.models import Role, Site, UserAccount
from app.study.loader import Study

DEMO_PASSWORD = "Demo-2026-zm001"  # noqa: S105 - published demo credential
DEMO_SITES = (
    ("SITE.01", "01", "Peking Union Medical College Hospital (demo)"),
    ("SITE.02", "02", "Shanghai Renji Hospital (demo)"),
    ("SITE.03", "03", "West China Hospital (demo)"),
)
DEMO_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("investigator", "Dr Li Wei", "investigator, site 01"),
    ("coordinator", "Zhang Min", "coordinator, site 01"),
    ("coordinator2", "Chen Jing", "coordinator, site 02"),
    ("monitor", "Wang Fang", "monitor, sites 01 and 02"),
    ("datamanager", "Liu Yang", "data manager, study-wide"),
    ("sponsor", "Zhao Lei", "sponsor, study-wide"),
    ("admin", "Sun Tao", "administrator"),
)
_ROLES: dict[str, list[tuple[Role, str | None]]] = {
    "investigator": [(Role.INVESTIGATOR, "01")],
    "coordinator": [(Role.COORDINATOR, "01")],
    "coordinator2": [(Role.COORDINATOR, "02")],
    "monitor": [(Role.MONITOR, "01"), (Role.MONITOR, "02")],
    "datamanager": [(Role.DATA_MANAGER, None)],
    "sponsor": [(Role.SPONSOR, None)],
    "admin": [(Role.ADMIN, None)],
}


def load_demo(engine: Engine, study: Study, *, subjects: int, seed: int = 1) -> bool:
    """Create the demo sites, accounts and `subjects` subjects; False if already present."""
    system = audit.Actor(None, "demo")
    with Session(engine, expire_on_commit=False) as session:
        if session.exec(select(UserAccount).where(UserAccount.username == "coordinator")).first():
            return False
        sites = {}
        for oid, number, name in DEMO_SITES:
            site = Site(oid=oid, number=number, name=name)
            session.add(site)
            sites[number] = site
        session.commit()
        for username, full_name, _ in DEMO_ACCOUNTS:
            roles = [(role, sites[n].id if n else None) for role, n in _ROLES[username]]
            auth.create_user(
                session,
                username=username,
                full_name=full_name,
                password=DEMO_PASSWORD,
                roles=roles,
                actor=system,
            )
        coordinators = {
            "01": session.exec(
                select(UserAccount).where(UserAccount.username == "coordinator")
            ).one(),
            "02": session.exec(
                select(UserAccount).where(UserAccount.username == "coordinator2")
            ).one(),
        }
        rng = random.Random(seed)  # noqa: S311 - demo data, not security
        for index in range(subjects):
            number = "01" if index % 3 != 2 else "02"
            _demo_subject(session, study, coordinators[number], sites[number], rng)
    return True


def _demo_subject(
    session: Session, study: Study, user: UserAccount, site: Site, rng: random.Random
) -> None:
    access = load_access(session, user)
    actor = audit.Actor(user, "demo")
    assert site.id is not None
    subject = service.register_subject(session, study, access=access, site_id=site.id, actor=actor)
    consent = date(2026, 3, 2) + timedelta(days=rng.randrange(0, 200))
    birth = consent - timedelta(days=rng.randrange(19 * 365, 65 * 365))
    sex = rng.choice(["F", "F", "F", "M"])
    forms: dict[str, dict[str, dict[int, dict[str, str | list[str] | None]]]] = {
        "F.IC": {"IG.IC": {1: {"ICVER": "2.0", "ICDAT": consent.isoformat(), "ICLTFU": "Y"}}},
        "F.DM": {
            "IG.DM": {
                1: {
                    "BRTHDAT": birth.isoformat(),
                    "SEX": sex,
                    "ETHNIC": "HAN",
                    "RACE": "ASIAN",
                    "CHILDPOT": "N" if sex == "F" else None,
                    "NCBPRSN": "POSTMENOPAUSAL" if sex == "F" else None,
                }
            }
        },
    }
    moment = datetime.combine(consent, datetime.min.time(), UTC) + timedelta(hours=10)
    for form_oid, values in forms.items():
        service.save_form(
            session, study, access=access, subject=subject,
            ref=service.FormRef("SE.SCR", 1, form_oid, 1),
            edit=service.FormEdit(values, base_version=0, complete=True),
            actor=actor, now=moment,
        )  # fmt: skip
