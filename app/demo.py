"""Demo data for trying TrialDesk: the ZM001 study after its 3+3 dose escalation, in expansion.

`load_demo` creates three sites, one account per role (plus an investigator and a coordinator
at every site) and subjects built from `SCENARIOS`, a table of casebook templates telling the
escalation's story, with the board's decisions (`app.demo_escalation`): screen failures,
subjects waiting at each step of the CAR-T path (screening, enrolled, leukapheresed,
lymphodepleted, infused), subjects in follow-up from D7 to M12, one completed, one withdrawn
and one who died. Infused subjects have vital signs and laboratory panels at a few visits
(some results out of range), an adverse event log, CRS episodes graded from their
assessments, an ICANS episode and a DLT assessment after D28.

Dates are relative to today (UTC): consent < enrolment < leukapheresis < lymphodepletion
< infusion, follow-up visits in their windows (a few on purpose out of window), nothing in
the future. Everything goes through the service functions the pages use (register_subject,
save_form, set_visit_date, change_status), so the demo is validated, derived and audited like
real data entry: a value a site could not enter, the demo cannot enter either.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate
from math import sqrt

from sqlalchemy import Engine
from sqlmodel import Session, select

from app import audit, auth
from app.access import load_access
from app.crf import write
from app.crf.changes import FormEdit, FormRef, FormValues, NewSubject, SubjectStatus, VisitDate
from app.db import unit_of_work
from app.demo_escalation import DemoBoard
from app.demo_review import leave_cleaning_state
from app.models import Role, Site, Subject, UserAccount, pk
from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import Visit

DEMO_PASSWORD = "Demo-2026-zm001"  # noqa: S105 - published demo credential
DEMO_SITES = (
    ("SITE.01", "01", "Peking Union Medical College Hospital (demo)"),
    ("SITE.02", "02", "Shanghai Renji Hospital (demo)"),
    ("SITE.03", "03", "West China Hospital (demo)"),
)
DEMO_TIME_ZONE = "Asia/Shanghai"
DEMO_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("investigator", "Dr Li Wei", "investigator, site 01"),
    ("coordinator", "Zhang Min", "coordinator, site 01"),
    ("coordinator2", "Chen Jing", "coordinator, site 02"),
    ("monitor", "Wang Fang", "monitor, sites 01 and 02"),
    ("datamanager", "Liu Yang", "data manager, study-wide"),
    ("sponsor", "Zhao Lei", "sponsor, study-wide"),
    ("admin", "Sun Tao", "administrator"),
    ("investigator2", "Dr Wu Hao", "investigator, site 02"),
    ("investigator3", "Dr Huang Jie", "investigator, site 03"),
    ("coordinator3", "Xu Li", "coordinator, site 03"),
)
_NAME_PARTS: dict[str, tuple[str, str]] = {
    "investigator": ("Wei", "Li"),
    "coordinator": ("Min", "Zhang"),
    "coordinator2": ("Jing", "Chen"),
    "monitor": ("Fang", "Wang"),
    "datamanager": ("Yang", "Liu"),
    "sponsor": ("Lei", "Zhao"),
    "admin": ("Tao", "Sun"),
    "investigator2": ("Hao", "Wu"),
    "investigator3": ("Jie", "Huang"),
    "coordinator3": ("Li", "Xu"),
}
"""(given name, family name) of each demo account: Chinese names are written family first."""
_ROLES: dict[str, list[tuple[Role, str | None]]] = {
    "investigator": [(Role.INVESTIGATOR, "01")],
    "coordinator": [(Role.COORDINATOR, "01")],
    "coordinator2": [(Role.COORDINATOR, "02")],
    "monitor": [(Role.MONITOR, "01"), (Role.MONITOR, "02")],
    "datamanager": [(Role.DATA_MANAGER, None)],
    "sponsor": [(Role.SPONSOR, None)],
    "admin": [(Role.ADMIN, None)],
    "investigator2": [(Role.INVESTIGATOR, "02")],
    "investigator3": [(Role.INVESTIGATOR, "03")],
    "coordinator3": [(Role.COORDINATOR, "03")],
}
_SITE_STAFF = {  # site number -> (coordinator, investigator)
    "01": ("coordinator", "investigator"),
    "02": ("coordinator2", "investigator2"),
    "03": ("coordinator3", "investigator3"),
}

Value = str | list[str] | None
Row = dict[str, Value]
Rows = dict[str, dict[int, Row]]
"""What a form submits: group OID -> repeat key -> item name -> text."""


class DemoDataRefused(Exception):
    """The services refused a demo value: the demo no longer fits the study definition."""


class DemoTooLarge(ValueError):
    """More subjects than the demo's dose escalation holds, on a study that gates it."""


# -- scenarios --------------------------------------------------------------------------------

PATH = ("screening", "enrolled", "leukapheresed", "lymphodepleted", "infused", "in_follow_up")
"""The main path of subject statuses, in order; `completed`, `withdrawn`, `died` and
`screen_failed` leave it."""


@dataclass(frozen=True)
class Scenario:
    """A casebook template: how far the subject went and what happened on the way."""

    site: str
    stage: str
    """Furthest status on PATH."""
    days_ago: int
    """Days from the stage's latest event to today: consent (screening), enrolment
    (enrolled), leukapheresis (leukapheresed), first lymphodepletion dose (lymphodepleted),
    infusion (infused and in follow-up)."""
    dose_level: str | None = None
    phase: str = "ESCALATION"
    exit: str | None = None
    """screen_failed, completed, withdrawn or died."""
    exit_day: int | None = None
    """Study day (from D0) of completion, withdrawal or death."""
    crs: tuple[int, ...] = ()
    """ASTCT grade of each CRS episode, in order."""
    icans: bool = False
    late_visit: str | None = None
    """A follow-up visit that took place after its window."""
    failed: str | None = None
    """The inclusion criterion a screen failure does not meet (IN04: SLEDAI-2K below 7)."""

    def reached(self, stage: str) -> bool:
        return PATH.index(self.stage) >= PATH.index(stage)

    @property
    def on_schedule(self) -> bool:
        """An escalation subject infused exactly `days_ago` days ago: the 3+3's timeline
        (cohorts, windows, the board's decisions) is fixed, the others' dates vary a little."""
        return self.phase == "ESCALATION" and self.reached("infused")


_FU = "in_follow_up"
SCENARIOS: tuple[Scenario, ...] = (
    # The 3+3 (app.demo_escalation): DL1 to DL4, three subjects each, 15 days apart; DL4 (the
    # top dose) confirmed with three more; then the expansion at DL3 the board selected and
    # screening. Oldest first: the demo builds them in this order.
    Scenario("01", _FU, 480, "DL1", exit="completed", exit_day=368, crs=(1,)),
    Scenario("02", _FU, 465, "DL1", crs=(1,)),
    Scenario("01", _FU, 450, "DL1", exit="died", exit_day=71, crs=(2,)),
    Scenario("01", _FU, 378, "DL2", crs=(2,), icans=True),
    Scenario("02", _FU, 363, "DL2", crs=(1,), late_visit="SE.M6"),
    Scenario("03", _FU, 348, "DL2", exit="withdrawn", exit_day=75, crs=(1,)),
    Scenario("01", _FU, 276, "DL3", crs=(3, 1)),
    Scenario("01", _FU, 261, "DL3", crs=(1,), late_visit="SE.M3"),
    Scenario("02", _FU, 246, "DL3", crs=(1,)),
    Scenario("03", "screening", 240, exit="screen_failed", failed="IN02"),
    Scenario("03", _FU, 174, "DL4", crs=(2,)),
    Scenario("01", _FU, 159, "DL4", crs=(3,)),
    Scenario("02", _FU, 144, "DL4", crs=(1,)),
    Scenario("03", _FU, 112, "DL4", crs=(1,)),
    Scenario("01", _FU, 109, "DL4", crs=(2,)),
    Scenario("02", _FU, 106, "DL4"),
    Scenario("01", "screening", 60, exit="screen_failed", failed="IN04"),
    Scenario("01", _FU, 30, "DL3", "EXPANSION", crs=(2,)),
    Scenario("03", _FU, 9, "DL3", "EXPANSION", crs=(1,)),
    Scenario("01", "infused", 1, "DL3", "EXPANSION"),
    Scenario("02", "lymphodepleted", 3, "DL3", "EXPANSION"),
    Scenario("01", "leukapheresed", 8, "DL3", "EXPANSION"),
    Scenario("01", "enrolled", 4, "DL3", "EXPANSION"),
    Scenario("02", "screening", 2),
)


# -- loading ----------------------------------------------------------------------------------


def load_demo(
    engine: Engine,
    study: Study,
    *,
    subjects: int,
    seed: int = 1,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> bool:
    """Create the demo sites, accounts and `subjects` subjects; False if already present.
    `progress(subjects created, subjects)` is called once the accounts exist and after each
    subject.

    The first `subjects` scenarios are built, and the board's decisions they need. A study
    with an escalation casebook holds the story's subjects at most (DemoTooLarge: its gates
    refuse a second round of the 3+3); without one (a volume benchmark, `volume_study`) the
    scenarios are cycled through for any number, and no board decision is recorded."""
    gated = study.escalation is not None and study.escalation.casebook is not None
    if gated and subjects > len(SCENARIOS):
        raise DemoTooLarge(
            f"The demo's dose escalation has {len(SCENARIOS)} subjects, not {subjects}: "
            "the 3+3 and its cap of infused subjects hold no more. A larger demo is for "
            "volume only, on the study without its escalation casebook (bench/export.py)."
        )
    system = audit.Actor(None, "demo")
    with Session(engine, expire_on_commit=False) as session:
        if session.exec(select(UserAccount).where(UserAccount.username == "coordinator")).first():
            return False
        sites = {}
        users = {}
        with unit_of_work(session):
            for oid, number, name in DEMO_SITES:
                site = Site(
                    study_id=study.id, oid=oid, number=number, name=name,
                    time_zone=DEMO_TIME_ZONE,
                )  # fmt: skip
                session.add(site)
                sites[number] = site
            session.flush()
            for username, full_name, _ in DEMO_ACCOUNTS:
                roles = [
                    (role, None if role == Role.ADMIN else study.id, sites[n].id if n else None)
                    for role, n in _ROLES[username]
                ]
                users[username] = auth.create_user(
                    session,
                    username=username,
                    full_name=full_name,
                    password=DEMO_PASSWORD,
                    roles=roles,
                    actor=system,
                    given_name=_NAME_PARTS[username][0],
                    family_name=_NAME_PARTS[username][1],
                )
        staff = {
            number: tuple(_Staff.of(session, users[name], study) for name in names)
            for number, names in _SITE_STAFF.items()
        }
        rng = random.Random(seed)  # noqa: S311 - demo data, not security
        now = datetime.now(UTC)
        board = DemoBoard(session, study, users["sponsor"], DEMO_PASSWORD, now) if gated else None
        progress(0, subjects)
        for index in range(subjects):
            scenario = SCENARIOS[index % len(SCENARIOS)]
            coordinator, investigator = staff[scenario.site]
            if board is not None:
                board.record_until(now.date() - timedelta(days=scenario.days_ago))
            with unit_of_work(session):  # each subject whole, or not at all
                _build_subject(
                    session, study, scenario, sites[scenario.site], coordinator, investigator,
                    rng, now,
                )  # fmt: skip
            progress(index + 1, subjects)
        leave_cleaning_state(session, study, now, DEMO_PASSWORD)
    return True


@dataclass(frozen=True)
class _Staff:
    author: write.Author

    @classmethod
    def of(cls, session: Session, user: UserAccount, study: Study) -> _Staff:
        access = load_access(session, user, study.id)
        return cls(write.Author(access, audit.Actor(user, "demo")))


@dataclass(frozen=True)
class _Plan:
    """The subject's key dates; the infusion is planned (in the future) until it happens."""

    consent: date
    enrolment: date
    """Also the day of the eligibility decision of a screen failure."""
    leukapheresis: date
    infusion: date
    end: date
    """Last day with data: today, or the day the subject left the study."""

    def day(self, study_day: int) -> date:
        return self.infusion + timedelta(days=study_day)

    @property
    def last_study_day(self) -> int:
        return (self.end - self.infusion).days


@dataclass(frozen=True)
class _Profile:
    sex: str
    birth: date
    height: float
    weight: float


@dataclass
class _Case:
    """One subject being built, with who enters its data and a clock for their entries."""

    session: Session
    study: Study
    scenario: Scenario
    subject: Subject
    coordinator: _Staff
    investigator: _Staff
    plan: _Plan
    profile: _Profile
    rng: random.Random
    now: datetime
    lot: str = ""
    """The product lot, from leukapheresis on."""
    fertile: bool = False
    """A woman of childbearing potential (known from demographics on)."""
    last_entry: dict[date, datetime] = field(default_factory=dict, repr=False)
    blood_counts: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    """Event OID -> the haematology results entered there, by test code."""

    def entered(self, day: date) -> datetime:
        """When the site records what happened on `day`: that afternoon, after anything
        already recorded about that day, never after now."""
        moment = datetime.combine(day, time(13, 0), UTC) + timedelta(
            minutes=self.rng.randint(0, 120)
        )
        if day in self.last_entry:
            moment = max(moment, self.last_entry[day] + timedelta(minutes=self.rng.randint(2, 9)))
        self.last_entry[day] = moment
        return min(moment, self.now)

    def save(
        self,
        event_oid: str,
        form_oid: str,
        rows: Rows,
        day: date,
        *,
        repeat: int = 1,
        by: _Staff | None = None,
        at: time | None = None,
    ) -> None:
        """Save a form complete, as entered on `day` (by the coordinator unless `by`), in the
        afternoon (`entered`) or, given `at`, at that time of day."""
        staff = by or self.coordinator
        change = FormValues(
            pk(self.subject), FormRef(event_oid, 1, form_oid, repeat),
            FormEdit(rows, base_version=0, complete=True),
        )  # fmt: skip
        now = self.entered(day) if at is None else min(datetime.combine(day, at, UTC), self.now)
        outcome = write.apply(self.session, self.study, change, by=staff.author, now=now)
        if not outcome.saved:
            raise DemoDataRefused(
                f"{self.subject.subject_key} {form_oid} at {event_oid}: {outcome.evaluation.errors}"
            )

    def date_visit(self, event_oid: str, day: date) -> None:
        write.apply(
            self.session, self.study, VisitDate(pk(self.subject), event_oid, 1, day),
            by=self.coordinator.author, now=self.entered(day),
        )  # fmt: skip

    def move(
        self, to: str, day: date, *, by: _Staff | None = None, reason: str | None = None
    ) -> None:
        """Change the subject's status, effective `day`; enrolment assigns the dose level."""
        staff = by or self.coordinator
        enrolling = to == "enrolled"
        change = SubjectStatus(
            pk(self.subject), to, day, reason,
            dose_level=self.scenario.dose_level if enrolling else None,
            phase=self.scenario.phase if enrolling else None,
        )  # fmt: skip
        write.apply(self.session, self.study, change, by=staff.author, now=self.entered(day))


def _build_subject(
    session: Session,
    study: Study,
    scenario: Scenario,
    site: Site,
    coordinator: _Staff,
    investigator: _Staff,
    rng: random.Random,
    now: datetime,
) -> None:
    plan = _plan(scenario, now.date(), rng)
    registered = datetime.combine(plan.consent, time(12, 0), UTC)
    subject = write.apply(
        session, study, NewSubject(pk(site)), by=coordinator.author, now=registered
    ).subject
    case = _Case(
        session, study, scenario, subject, coordinator, investigator, plan,
        _profile(plan.consent, rng), rng, now,
    )  # fmt: skip
    _screen(case)
    if scenario.exit == "screen_failed":
        _fail_screening(case)
        return
    steps: tuple[tuple[str, Callable[[_Case], None]], ...] = (
        ("enrolled", _enrol),
        ("leukapheresed", _collect),
        ("lymphodepleted", _lymphodeplete),
        ("infused", _infuse),
        ("in_follow_up", _follow_up),
    )
    for stage, step in steps:
        if scenario.reached(stage):
            step(case)
    if scenario.reached("infused"):
        _log_adverse_events(case)
    if scenario.exit is not None:
        _leave(case)


def _plan(scenario: Scenario, today: date, rng: random.Random) -> _Plan:
    """Key dates: gaps consent -> enrolment -> leukapheresis -> first LD dose (D-5) -> D0,
    placed so that the scenario's latest event falls `days_ago` (plus a little, unless on
    schedule) before today."""
    gaps = (rng.randint(5, 9), rng.randint(3, 8), rng.randint(20, 26), 5)
    offsets = (0, *accumulate(gaps))
    latest = {"screening": 0, "enrolled": 1, "leukapheresed": 2, "lymphodepleted": 3}
    jitter = rng.randint(0, scenario.days_ago // 10)
    days_ago = scenario.days_ago + (0 if scenario.on_schedule else jitter)
    start = today - timedelta(days=days_ago + offsets[latest.get(scenario.stage, 4)])
    consent, enrolment, leukapheresis, _, infusion = (start + timedelta(days=o) for o in offsets)
    end = today
    if scenario.exit_day is not None:
        end = min(today, infusion + timedelta(days=scenario.exit_day))
    elif scenario.exit == "screen_failed":
        end = enrolment
    return _Plan(consent, enrolment, leukapheresis, infusion, end)


def _profile(consent: date, rng: random.Random) -> _Profile:
    sex = "F" if rng.random() < 0.85 else "M"
    height = rng.uniform(150, 168) if sex == "F" else rng.uniform(163, 182)
    return _Profile(
        sex=sex,
        birth=consent - timedelta(days=rng.randrange(19 * 365, 62 * 365)),
        height=round(height, 1),
        weight=round(rng.uniform(0.85, 1.25) * 22 * (height / 100) ** 2, 1),
    )


# -- small helpers ----------------------------------------------------------------------------


def _one(group_oid: str, **values: Value) -> Rows:
    """The values of a non-repeating group."""
    return {group_oid: {1: values}}


def _rows(group_oid: str, rows: Iterable[Row]) -> Rows:
    """The rows of a repeating group, numbered from 1."""
    return {group_oid: dict(enumerate(rows, start=1))}


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), UTC)


def _dtm(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def _hm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _num(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _yn(flag: bool) -> str:
    return "Y" if flag else "N"


def _preset_rows(study: Study, form_oid: str, group_oid: str) -> tuple[dict[str, str], ...]:
    return next(g.rows for g in study.form(form_oid).item_groups if g.oid == group_oid)


# -- screening and enrolment ------------------------------------------------------------------


def _screen(case: _Case) -> None:
    """Consent, demographics, classification criteria, disease activity, vitals and labs."""
    day, profile = case.plan.consent, case.profile
    case.date_visit("SE.SCR", day)
    case.save(
        "SE.SCR", "F.IC",
        _one("IG.IC", ICVER="2.0", ICDAT=day.isoformat(), ICLTFU="Y",
             ICOPT=case.rng.choice(("Y", "Y", "N"))),
        day,
    )  # fmt: skip
    demographics = _demographics(profile, day, case.rng)
    case.save("SE.SCR", "F.DM", demographics, day)
    case.fertile = demographics["IG.DM"][1]["CHILDPOT"] == "Y"
    _pregnancy_test(case, "SE.SCR", day)
    case.save("SE.SCR", "F.EACR", _classification(case.rng), day, by=case.investigator)
    _vital_signs(case, "SE.SCR", [("SINGLE", _at(day, 9, case.rng.randint(0, 59)))])
    _labs(case, "SE.SCR", day)
    _disease_activity(case, "SE.SCR", day, active=case.scenario.failed != "IN04")


def _pregnancy_test(case: _Case, event_oid: str, day: date) -> None:
    """A negative serum pregnancy test on `day` for a woman of childbearing potential (EC011:
    at screening, and at baseline within 72 hours of the first lymphodepletion dose). It is
    entered at noon, without drawing on the demo's random numbers, so that everything else
    the demo builds stays as it was."""
    if case.fertile:
        test = _one("IG.PREG", PGDAT=day.isoformat(), PGTIM="08:00", PGSPEC="SERUM",
                    PGRES="NEGATIVE")  # fmt: skip
        case.save(event_oid, "F.PREG", test, day, at=time(12, 0))


def _demographics(profile: _Profile, consent: date, rng: random.Random) -> Rows:
    age = (consent - profile.birth).days // 365
    fertile = profile.sex == "F" and age < 48 and rng.random() < 0.9
    ethnic = "HAN" if rng.random() < 0.9 else "OTHER CHINESE ETHNIC GROUP"
    return _one(
        "IG.DM",
        BRTHDAT=profile.birth.isoformat(),
        SEX=profile.sex,
        ETHNIC=ethnic,
        ETHNICSP=rng.choice(("Hui", "Zhuang", "Manchu")) if ethnic != "HAN" else None,
        RACE="ASIAN",
        CHILDPOT=_yn(fertile) if profile.sex == "F" else None,
        NCBPRSN=None if fertile or profile.sex == "M" else
        ("POSTMENOPAUSAL" if age >= 45 else "TUBAL LIGATION"),
    )  # fmt: skip


_EACR_DOMAINS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("FEVER", 2),),
    (("LEUKOPEN", 3), ("THROMBOC", 4), ("AIHEMOL", 4)),
    (("DELIRIUM", 2), ("PSYCHOS", 3), ("SEIZURE", 5)),
    (("ALOPECIA", 2), ("ORALULC", 2), ("SCLEDLE", 4), ("ACLE", 6)),
    (("EFFUSION", 5), ("PERICARD", 6)),
    (("JOINT", 6),),
    (("PROTUR", 4), ("LNCL2V", 8), ("LNCL34", 10)),
    (("APLAB", 2),),
    (("C3ORC4", 3), ("C3ANDC4", 4)),
    (("DSDNASM", 6),),
)
"""2019 EULAR/ACR domains: criteria and weights; a domain counts its highest weight."""
_EACR_CLINICAL = ("FEVER", "LEUKOPEN", "THROMBOC", "ALOPECIA", "ORALULC", "ACLE", "JOINT",
                  "PROTUR", "LNCL34", "EFFUSION")  # fmt: skip


def _classification(rng: random.Random) -> Rows:
    present = {"DSDNASM", "C3ORC4", "C3ANDC4", *rng.sample(_EACR_CLINICAL, 3)}
    score = sum(max((w for c, w in d if c in present), default=0) for d in _EACR_DOMAINS)
    criteria: Row = {c: _yn(c in present) for domain in _EACR_DOMAINS for c, _ in domain}
    return {
        "IG.EACR": {1: {"ANAENTRY": "Y"}},
        "IG.EACR.CRIT": {1: {**criteria, "EACR_TOTINV": str(score)}},
    }


_SLEDAI_WEIGHTS = {
    "SEIZURE": 8, "PSYCHOSIS": 8, "OBS": 8, "VISUAL": 8, "CRANIAL": 8, "HEADACHE": 8, "CVA": 8,
    "VASCULIT": 8, "ARTHRIT": 4, "MYOSITIS": 4, "CASTS": 4, "HEMATUR": 4, "PROTUR": 4,
    "PYURIA": 4, "RASH": 2, "ALOPECIA": 2, "MUCULC": 2, "PLEURISY": 2, "PERICARD": 2,
    "LOWCOMP": 2, "DNABIND": 2, "FEVER": 1, "THROMBO": 1, "LEUKOPEN": 1,
}  # fmt: skip
_SLEDAI_ACTIVE = ("ARTHRIT", "PROTUR", "HEMATUR", "RASH", "ALOPECIA", "MUCULC", "PLEURISY",
                  "VASCULIT", "THROMBO", "LEUKOPEN")  # fmt: skip


def _disease_activity(case: _Case, event_oid: str, day: date, *, active: bool) -> None:
    """SLEDAI-2K and the physician global assessment, by the investigator: active lupus at
    screening (SLEDAI-2K 8 or more unless `active` is false), low activity after infusion."""
    rng = case.rng
    if event_oid == "SE.SCR":
        present = {"LOWCOMP", "DNABIND"}
        if active:
            present |= set(rng.sample(_SLEDAI_ACTIVE, 3))
        pga = rng.uniform(1.4, 2.6) if active else rng.uniform(0.6, 1.2)
    else:
        present = {"DNABIND"} if rng.random() < 0.3 else set()
        pga = rng.uniform(0.0, 0.6)
    counts = case.blood_counts.get(event_oid, {})
    for name, test, limit in (("LEUKOPEN", "WBC", 3.0), ("THROMBO", "PLAT", 100.0)):
        if counts.get(test, limit) < limit:  # the investigator scores what the labs show
            present.add(name)
        else:
            present.discard(name)
    descriptors: Row = {name: _yn(name in present) for name in _SLEDAI_WEIGHTS}
    total = sum(_SLEDAI_WEIGHTS[name] for name in present)
    sledai = _one("IG.SLEDAI", SLEDAIDAT=day.isoformat(), **descriptors, SLEDAITOTINV=str(total))
    case.save(event_oid, "F.SLEDAI", sledai, day, by=case.investigator)
    assessor = f"INV-{case.scenario.site}"
    pga_rows = _one("IG.PGA", PGADAT=day.isoformat(), PGA=_num(pga, 1), PGAASSR=assessor)
    case.save(event_oid, "F.PGA", pga_rows, day, by=case.investigator)


def _eligibility(case: _Case, *, eligible: bool) -> Rows:
    """One answer per preset criterion row: inclusions met, exclusions absent, except the
    scenario's failed criterion."""
    criteria, failed = _preset_rows(case.study, "F.IE", "IG.IE.IECRIT"), case.scenario.failed
    answers: dict[int, Row] = {
        repeat: {"IEORRES": _yn(row["IECAT"] == "INCLUSION" and row["IETESTCD"] != failed)}
        for repeat, row in enumerate(criteria, start=1)
    }
    decision: Row = {"ELIGYN": _yn(eligible)}
    if eligible:
        decision["ENRLDAT"] = case.plan.enrolment.isoformat()
    return {"IG.IE.IECRIT": answers, "IG.IE": {1: decision}}


def _enrol(case: _Case) -> None:
    """Eligibility, then enrolment by the site's investigator, who assigns the dose level."""
    day = case.plan.enrolment
    case.save("SE.SCR", "F.IE", _eligibility(case, eligible=True), day, by=case.investigator)
    case.move("enrolled", day, by=case.investigator)


def _fail_screening(case: _Case) -> None:
    day = case.plan.enrolment
    case.save("SE.SCR", "F.IE", _eligibility(case, eligible=False), day, by=case.investigator)
    _disposition(case, "SCREENING", "SCREEN FAILURE", day, long_term=None)
    case.move("screen_failed", day, reason=f"Inclusion criterion {case.scenario.failed} not met")


# -- cell collection, lymphodepletion, infusion -----------------------------------------------


def _collect(case: _Case) -> None:
    """Leukapheresis (L0) and the product: released for subjects who go on, else pending."""
    rng, day = case.rng, case.plan.leukapheresis
    case.date_visit("SE.APHPRE", day - timedelta(days=2))
    case.date_visit("SE.APH", day)
    start = _at(day, 8, rng.choice((0, 15, 30, 45)))
    end = start + timedelta(minutes=rng.randint(180, 260))
    case.save(
        "SE.APH", "F.APH",
        {
            "IG.APH": {1: {"APHYN": "Y"}},
            "IG.APH.PROC": {1: {
                "APHNUM": "1", "APHDAT": day.isoformat(), "APHSTTM": _hm(start),
                "APHENTM": _hm(end),
                "APHACC": "PERIPHERAL VEINS" if rng.random() < 0.8 else "CENTRAL VENOUS CATHETER",
                "APHTBV": _num(rng.uniform(8, 14), 1), "APHBVN": _num(rng.uniform(2, 3), 1),
                "APHVOL": _num(rng.uniform(150, 250), 0), "APHTNC": _num(rng.uniform(8, 20), 2),
                "APHCD3": _num(rng.uniform(2, 8), 2), "APHANTIC": "ACD-A",
                "PRECBCDAT": (day - timedelta(days=2)).isoformat(), "APHAE": "N",
                "SHIPDTM": _dtm(end + timedelta(hours=2)),
            }},
        },
        day,
    )  # fmt: skip
    case.move("leukapheresed", day)
    case.lot = f"ZM001-{day:%y%m}-{case.subject.subject_key}"
    if case.scenario.reached("lymphodepleted"):
        released = case.plan.day(-5) - timedelta(days=rng.randint(1, 4))
        target = _target_dose(case)
        product: Row = {
            "MFGRES": "RELEASED", "LOTNUM": case.lot, "RELDAT": released.isoformat(),
            "PRODCAR": _num(target * rng.uniform(1.5, 4), 1),
            "PRODVIAB": _num(rng.uniform(85, 97), 1), "PRODCARP": _num(rng.uniform(25, 55), 1),
            "REMFGYN": "N",
        }  # fmt: skip
        case.save("SE.APH", "F.PROD", _one("IG.PROD", **product), released)
    else:
        pending = _one("IG.PROD", MFGRES="PENDING", LOTNUM=case.lot, REMFGYN="N")
        case.save("SE.APH", "F.PROD", pending, day + timedelta(days=1))


def _target_dose(case: _Case) -> float:
    levels = {level.code: level for level in case.study.info.dose_levels}
    return levels[case.scenario.dose_level or ""].dose


_LD_REGIMEN = (("FLUDARABINE", 25, 9, 30), ("CYCLOPHOSPHAMIDE", 250, 10, 60))
"""Drug, mg/m2 per day, start hour, minutes; given on D-5, D-4 and D-3."""


def _lymphodeplete(case: _Case) -> None:
    """Baseline visit and fludarabine + cyclophosphamide on D-5 to D-3."""
    plan, profile = case.plan, case.profile
    case.date_visit("SE.BL", plan.day(-7))
    _pregnancy_test(case, "SE.BL", plan.day(-7))
    case.date_visit("SE.LD", plan.day(-5))
    bsa = round(sqrt(profile.height * profile.weight / 3600), 2)
    administrations: list[Row] = []
    for study_day in (-5, -4, -3):
        for drug, dose, hour, minutes in _LD_REGIMEN:
            start = _at(plan.day(study_day), hour, case.rng.randint(0, 20))
            administrations.append({
                "LDDRUG": drug, "LDDAY": f"D{study_day}", "LDPLDOS": str(dose),
                "LDADOS": _num(dose * bsa, 1), "LDSTDTM": _dtm(start),
                "LDENDTM": _dtm(start + timedelta(minutes=minutes)),
                "LDROUTE": "INTRAVENOUS", "LDMODYN": "N",
            })  # fmt: skip
    dosing = _one(
        "IG.LD", LDHT=_num(profile.height, 1), LDWT=_num(profile.weight, 1),
        LDWTDAT=plan.day(-6).isoformat(), LDBSA=_num(bsa, 2),
        LDCRCL=_num(case.rng.uniform(75, 125), 0),
    )  # fmt: skip
    case.save("SE.LD", "F.LD", dosing | _rows("IG.LD.ADM", administrations), plan.day(-3))
    case.move("lymphodepleted", plan.day(-3))


def _infuse(case: _Case) -> None:
    """ZM001 infusion at the assigned dose level (D0), with vital signs around it."""
    rng, d0 = case.rng, case.plan.infusion
    start = _at(d0, 10, rng.randint(0, 45))
    case.date_visit("SE.D0", d0)
    infusion: Row = {
        "PRECHK": "Y", "DOSELVL": case.scenario.dose_level,
        "EXDOSE": _num(_target_dose(case) * rng.uniform(0.9, 1.1), 1),
        "EXLOT": case.lot, "EXBAGN": "1", "EXVOL": _num(rng.uniform(40, 80), 1),
        "THAWDTM": _dtm(start - timedelta(minutes=25)), "EXSTDTM": _dtm(start),
        "EXENDTM": _dtm(start + timedelta(minutes=rng.randint(10, 20))),
        "EXCOMP": "Y", "EXINTYN": "N", "PREMEDYN": "Y", "IRRYN": "N",
    }  # fmt: skip
    case.save("SE.D0", "F.EX", _one("IG.EX", **infusion), d0)
    timepoints = [
        ("PRE-DOSE", start - timedelta(minutes=30)),
        ("DURING INFUSION", start + timedelta(minutes=8)),
        ("POST-INFUSION", start + timedelta(minutes=75)),
    ]
    _vital_signs(case, "SE.D0", timepoints)
    case.move("infused", d0)


# -- follow-up --------------------------------------------------------------------------------

_LAB_VISITS = ("SE.D7", "SE.D28", "SE.M3")
_ACTIVITY_VISITS = ("SE.M3", "SE.M6", "SE.M12")


def _follow_up(case: _Case) -> None:
    """Follow-up from D1: every visit that has taken place is dated; vital signs and labs at
    D7, D28 and M3, disease activity at M3, M6 and M12, the DLT assessment at D28."""
    case.move("in_follow_up", case.plan.day(1))
    for visit in case.study.schedule.visits:
        if visit.anchor != "infusion" or visit.day is None or visit.day < 1:
            continue
        day = _visit_date(case, visit)
        if day > case.plan.end:
            break
        case.date_visit(visit.oid, day)
        if visit.oid in _LAB_VISITS:
            _vital_signs(case, visit.oid, [("SINGLE", _at(day, 9, case.rng.randint(0, 59)))])
            _labs(case, visit.oid, day)
        if visit.oid in _ACTIVITY_VISITS:
            _disease_activity(case, visit.oid, day, active=False)
        if visit.oid == "SE.D28":
            dlt = _one("IG.DLT", DLTEVAL="Y", DLTYN="N")
            case.save("SE.D28", "F.DLT", dlt, day, by=case.investigator)


def _visit_date(case: _Case, visit: Visit) -> date:
    """Near the target day and inside the window, unless the scenario makes the visit late."""
    assert visit.day is not None
    earliest, latest = visit.day, visit.day
    if visit.window is not None:
        earliest, latest = visit.window.earliest, visit.window.latest
    if visit.oid == case.scenario.late_visit:
        return case.plan.day(latest + case.rng.randint(2, 4))
    offset = visit.day + case.rng.choice((-1, 0, 0, 0, 1, 2))
    return case.plan.day(min(max(offset, earliest), latest))


def _vital_signs(case: _Case, event_oid: str, timepoints: list[tuple[str, datetime]]) -> None:
    rng = case.rng
    measurements: list[Row] = [
        {
            "VSTPT": timepoint, "VSDTC": _dtm(moment),
            "VSPOS": "SUPINE" if timepoint == "DURING INFUSION" else "SITTING",
            "TEMP": _num(rng.uniform(36.2, 37.3), 1), "SYSBP": str(rng.randint(102, 138)),
            "DIABP": str(rng.randint(62, 88)), "HR": str(rng.randint(62, 96)),
            "RESP": str(rng.randint(14, 20)), "OXYSAT": str(rng.randint(96, 99)),
            "O2SUPYN": "N",
        }
        for timepoint, moment in timepoints
    ]  # fmt: skip
    case.save(event_oid, "F.VS", _rows("IG.VS.VSMEAS", measurements), timepoints[0][1].date())


@dataclass(frozen=True)
class _LabTest:
    unit: str
    low: float | None
    high: float
    decimals: int
    male: tuple[float, float] | None = None
    """Normal range for men when it differs."""


_HAEMATOLOGY = {
    "WBC": _LabTest("10^9/L", 3.5, 9.5, 2), "NEUT": _LabTest("10^9/L", 1.8, 6.3, 2),
    "LYM": _LabTest("10^9/L", 1.1, 3.2, 2), "MONO": _LabTest("10^9/L", 0.1, 0.6, 2),
    "EOS": _LabTest("10^9/L", 0.02, 0.52, 2), "BASO": _LabTest("10^9/L", 0, 0.06, 2),
    "HGB": _LabTest("g/L", 115, 150, 0, (130, 175)),
    "HCT": _LabTest("L/L", 0.35, 0.45, 2, (0.40, 0.50)),
    "PLAT": _LabTest("10^9/L", 125, 350, 0), "RETI": _LabTest("%", 0.5, 2.0, 1),
}  # fmt: skip
_CHEMISTRY = {
    "ALT": _LabTest("U/L", 7, 40, 0), "AST": _LabTest("U/L", 13, 35, 0),
    "ALP": _LabTest("U/L", 35, 100, 0), "GGT": _LabTest("U/L", 7, 45, 0),
    "BILI": _LabTest("umol/L", None, 21, 1), "BILDIR": _LabTest("umol/L", None, 6.8, 1),
    "ALB": _LabTest("g/L", 40, 55, 1), "PROT": _LabTest("g/L", 65, 85, 1),
    "CREAT": _LabTest("umol/L", 41, 81, 0, (57, 111)), "UREA": _LabTest("mmol/L", 2.6, 7.5, 1),
    "URATE": _LabTest("umol/L", 150, 360, 0, (208, 428)),
    "GLUC": _LabTest("mmol/L", 3.9, 6.1, 1), "SODIUM": _LabTest("mmol/L", 137, 147, 0),
    "K": _LabTest("mmol/L", 3.5, 5.3, 1), "CL": _LabTest("mmol/L", 99, 110, 0),
    "CA": _LabTest("mmol/L", 2.11, 2.52, 2), "PHOS": _LabTest("mmol/L", 0.85, 1.51, 2),
    "MG": _LabTest("mmol/L", 0.75, 1.02, 2), "LDH": _LabTest("U/L", 120, 250, 0),
    "CK": _LabTest("U/L", 40, 200, 0), "TRIG": _LabTest("mmol/L", None, 1.7, 2),
    "CHOL": _LabTest("mmol/L", None, 5.2, 2),
}  # fmt: skip
_LAB_SHIFTS: dict[str, dict[str, float]] = {
    "SE.SCR": {"LYM": 0.45, "WBC": 0.75, "HGB": 0.82, "HCT": 0.85, "ALB": 0.8, "PROT": 0.88},
    "SE.D7": {"WBC": 0.3, "NEUT": 0.2, "LYM": 0.1, "MONO": 0.35, "PLAT": 0.5, "HGB": 0.85,
              "LDH": 1.6, "ALT": 1.5, "AST": 1.6},
    "SE.D28": {"LYM": 0.55, "NEUT": 0.65, "PLAT": 0.8},
}  # fmt: skip
"""Typical departures from the middle of the normal range: lupus cytopenias at screening,
post-lymphodepletion cytopenias at D7 and their recovery by D28."""


def _labs(case: _Case, event_oid: str, day: date) -> None:
    """Haematology and chemistry panels at the site's laboratory, with its normal ranges."""
    for form_oid, group_oid, tests in (
        ("F.LBHEM", "IG.LBHEM", _HAEMATOLOGY),
        ("F.LBCHEM", "IG.LBCHEM", _CHEMISTRY),
    ):
        shifts = _LAB_SHIFTS.get(event_oid, {})
        codes = [row["LBTESTCD"] for row in _preset_rows(case.study, form_oid, f"{group_oid}.LB")]
        results = [_lab_result(case, tests[code], shifts.get(code)) for code in codes]
        if "WBC" in codes:
            results[codes.index("WBC")] = _white_count(case, tests["WBC"], codes, results)
            case.blood_counts[event_oid] = {
                code: float(str(row["LBORRES"])) for code, row in zip(codes, results, strict=True)
            }
        sample = _one(
            group_oid, LBDAT=day.isoformat(), LBTIM=f"07:{case.rng.randint(30, 59)}",
            LBNAM=f"Site {case.scenario.site} clinical laboratory",
        )  # fmt: skip
        case.save(event_oid, form_oid, sample | _rows(f"{group_oid}.LB", results), day)


DIFFERENTIAL = ("NEUT", "LYM", "MONO", "EOS", "BASO")


def _white_count(case: _Case, test: _LabTest, codes: list[str], results: list[Row]) -> Row:
    """The white cell count of a panel: its differential's sum and a little more (a count
    below its own differential would be a query for every subject)."""
    parts = [
        float(str(r["LBORRES"])) for c, r in zip(codes, results, strict=True) if c in DIFFERENTIAL
    ]
    return _result_row(case, test, sum(parts) * case.rng.uniform(1.0, 1.04))


def _lab_result(case: _Case, test: _LabTest, shift: float | None) -> Row:
    """A result near the middle of the normal range, moved by `shift` when given; otherwise
    now and then just outside the range. Clinically significant when far outside."""
    rng = case.rng
    low, high = _normal_range(case, test)
    middle = (low + high) / 2 if low is not None else high * 0.55
    value = (middle + (high - (low or 0)) * rng.uniform(-0.25, 0.25)) * (shift or 1)
    if shift is None and rng.random() < 0.06:
        value = high * rng.uniform(1.05, 1.4) if rng.random() < 0.5 or not low else low * 0.85
    return _result_row(case, test, value)


def _normal_range(case: _Case, test: _LabTest) -> tuple[float | None, float]:
    return test.male if test.male and case.profile.sex == "M" else (test.low, test.high)


def _result_row(case: _Case, test: _LabTest, value: float) -> Row:
    low, high = _normal_range(case, test)
    text = _num(max(value, 0), test.decimals)
    value = float(text)
    flagged = (low is not None and value < low) or value > high
    significant = (low is not None and value < low * 0.5) or value > high * 2
    return {
        "LBORRES": text, "LBORRESU": test.unit,
        "LBORNRLO": None if low is None else str(low), "LBORNRHI": str(high),
        "LBCLSIG": _yn(significant) if flagged else None,
    }  # fmt: skip


# -- adverse events, CRS, ICANS ---------------------------------------------------------------


@dataclass(frozen=True)
class _AdverseEvent:
    term: str
    onset: int
    """Study day of onset."""
    days: int
    grade: int
    related: str = "POSSIBLY RELATED"
    related_ld: str = "UNLIKELY RELATED"
    special: tuple[str, ...] = ()
    treatment: tuple[str, ...] = ("NONE",)
    serious: bool = False
    fatal: bool = False


@dataclass(frozen=True)
class _Episode:
    """A CRS episode: onset study day, its length in days and the grade reached on each day
    assessed so far (fewer than `days` while the episode is ongoing)."""

    onset: int
    days: int
    levels: tuple[int, ...]


_CRS_COURSE = {1: (1, 1), 2: (1, 2, 1), 3: (1, 2, 3, 2, 1)}
"""Daily grades of an episode by its maximum grade."""
_CRS_TREATMENT = {
    1: ("OTHER",),
    2: ("TOCILIZUMAB", "OXYGEN"),
    3: ("TOCILIZUMAB", "CORTICOSTEROID", "VASOPRESSOR", "OXYGEN"),
}
_OTHER_EVENTS = (
    _AdverseEvent("Headache", 1, 2, 1, related_ld="NOT RELATED"),
    _AdverseEvent("Fatigue", 2, 8, 1),
    _AdverseEvent("Nausea", 1, 3, 1, related_ld="POSSIBLY RELATED"),
    _AdverseEvent("Upper respiratory tract infection", 44, 9, 2, "UNLIKELY RELATED",
                  treatment=("ANTIMICROBIAL",)),
    _AdverseEvent("Hypogammaglobulinaemia", 58, 120, 2, "RELATED",
                  special=("HYPOGAMMAGLOBULINEMIA",), treatment=("IVIG",)),
)  # fmt: skip


def _log_adverse_events(case: _Case) -> None:
    """The AE log, then one form per CRS episode, the ICANS episode and the death, each
    citing its AE number."""
    episodes = _crs_episodes(case)
    icans_day = episodes[0].onset + episodes[0].days - 1 if episodes else 4
    events = _adverse_events(case, episodes, icans_day)
    if not events:
        return
    numbers = {key: str(n) for n, (key, _) in enumerate(events, start=1) if key}
    log = _rows("IG.AE", (_ae_row(case, str(n), e) for n, (_, e) in enumerate(events, start=1)))
    # Entered the day after the last onset or end it records (an end date is not known before).
    last_day = max(
        event.onset
        + (event.days if case.plan.day(event.onset + event.days) <= case.plan.end else 0)
        for _, event in events
    )
    entered = min(case.plan.day(last_day + 1), case.plan.end)
    case.save(LOG_EVENT_OID, "F.AE", log, entered, by=case.investigator)
    for n, episode in enumerate(episodes, start=1):
        _crs_episode(case, n, episode, numbers[f"CRS{n}"])
    if "ICANS" in numbers:
        _icans_episode(case, icans_day, numbers["ICANS"])
    if "DEATH" in numbers:
        _death(case, numbers["DEATH"])


def _crs_episodes(case: _Case) -> list[_Episode]:
    """The scenario's CRS episodes from D1-D3, a few days apart, as far as they have gone."""
    episodes, onset = [], case.rng.randint(1, 3)
    for grade in case.scenario.crs:
        course = _CRS_COURSE[grade]
        assessed = course[: max(0, case.plan.last_study_day - onset + 1)]
        if assessed:
            episodes.append(_Episode(onset, len(course), assessed))
        onset += len(course) + case.rng.randint(3, 6)
    return episodes


def _adverse_events(
    case: _Case, episodes: list[_Episode], icans_day: int
) -> list[tuple[str, _AdverseEvent]]:
    """Adverse events by onset, up to the last day with data, each with the key of the event
    form that cites it (CRS1, CRS2, ICANS, DEATH) or an empty key."""
    rng, last = case.rng, case.plan.last_study_day
    events = [
        (f"CRS{n}", _AdverseEvent(
            "Cytokine release syndrome", e.onset, e.days, max(e.levels), "RELATED",
            special=("CRS",), treatment=_CRS_TREATMENT[max(e.levels)], serious=max(e.levels) >= 3,
        ))
        for n, e in enumerate(episodes, start=1)
    ]  # fmt: skip
    if case.scenario.icans:
        term = "Immune effector cell-associated neurotoxicity syndrome"
        events.append(
            ("ICANS", _AdverseEvent(term, icans_day, 2, 1, "RELATED", special=("ICANS",)))
        )
    if rng.random() < 0.7:
        events.append(("", _AdverseEvent(
            "Neutrophil count decreased", rng.randint(3, 5), rng.randint(6, 12), 3,
            related_ld="RELATED", treatment=("G-CSF",),
        )))  # fmt: skip
    events += [("", event) for event in rng.sample(_OTHER_EVENTS, 2)]
    if case.scenario.exit == "died":
        events.append(("DEATH", _AdverseEvent(
            "Pneumonia", last - 9, 9, 5, "UNLIKELY RELATED", special=("INFECTION",),
            treatment=("ANTIMICROBIAL", "OXYGEN"), serious=True, fatal=True,
        )))  # fmt: skip
    return sorted((e for e in events if e[1].onset <= last), key=lambda e: e[1].onset)


def _ae_row(case: _Case, number: str, event: _AdverseEvent) -> Row:
    start, end = case.plan.day(event.onset), case.plan.day(event.onset + event.days)
    ongoing = end > case.plan.end
    outcome = (
        "FATAL" if event.fatal else "RECOVERING/RESOLVING" if ongoing else "RECOVERED/RESOLVED"
    )
    row: Row = {
        "AESPID": number, "AETERM": event.term, "AESTDAT": start.isoformat(),
        "AESTTIM": f"{case.rng.randint(6, 22):02d}:{case.rng.choice(('00', '15', '30', '45'))}",
        "AEONGO": _yn(ongoing), "AEENDAT": None if ongoing else end.isoformat(),
        "AETOXGR": str(event.grade), "AESER": _yn(event.serious),
        "AERELZM": event.related, "AERELLD": event.related_ld, "AERELAPH": "NOT RELATED",
        "AEACN": "NOT APPLICABLE", "AEOUT": outcome, "AESIYN": _yn(bool(event.special)),
        "AESI": list(event.special), "AEDLTYN": "N", "AETRT": list(event.treatment),
    }  # fmt: skip
    if event.serious:
        row |= {"AESDTH": _yn(event.fatal), "AESLIFE": "N", "AESHOSP": "Y", "AESDISAB": "N",
                "AESCONG": "N", "AESMIE": "N"}  # fmt: skip
    return row


def _crs_episode(case: _Case, repeat: int, episode: _Episode, ae_number: str) -> None:
    """Daily worst values: fever; hypotension with fluids (grade 2) or a vasopressor (3);
    low-flow (2) or high-flow (3) oxygen; tocilizumab when the grade first rises to 2 or 3."""
    rng, plan = case.rng, case.plan
    onset = _at(plan.day(episode.onset), rng.randint(12, 22), rng.choice((0, 20, 40)))
    toci_dose = str(min(800, round(8 * case.profile.weight)))
    assessments: list[Row] = []
    worst, treated = 0, False
    for index, level in enumerate(episode.levels):
        toci = level >= 2 and level > worst
        worst, treated = max(worst, level), treated or toci
        fever = not treated or toci
        tmax = rng.uniform(38.2, 39.0 + 0.4 * level) if fever else rng.uniform(36.8, 37.7)
        device = {1: "NONE", 2: "LOW-FLOW NASAL CANNULA", 3: "HIGH-FLOW NASAL CANNULA"}[level]
        assessments.append({
            "ASMDTM": _dtm(onset if index == 0 else _at(plan.day(episode.onset + index), 8)),
            "TMAX": _num(tmax, 1),
            "FEVERYN": _yn(fever), "ANTIPYR_ANTICYT": _yn(treated),
            "HYPOTYN": _yn(level >= 2), "FLUIDYN": _yn(level >= 2),
            "VASONUM": "1" if level == 3 else "0", "VASOPRESSIN": "N", "O2DEV": device,
            "O2FLOW": {1: None, 2: str(rng.randint(2, 4)), 3: "30"}[level],
            "TOCINUM": "1" if toci else "0",
            "TOCIDOS": toci_dose if toci else None,
            "STERYN": _yn(level == 3), "ICUYN": _yn(level == 3),
        })  # fmt: skip
    resolved = _at(plan.day(episode.onset + episode.days), 9)
    grade = str(max(episode.levels))
    header = _one(
        "IG.CRS", CRSSTDTM=_dtm(onset),
        CRSENDTM=_dtm(resolved) if resolved.date() <= plan.end else None,
        CRSGRINV=grade, CRSDTHYN="N", CRSAEID=ae_number,
    )  # fmt: skip
    day = min(plan.end, resolved.date())
    case.save(LOG_EVENT_OID, "F.CRS", header | _rows("IG.CRS.ASM", assessments), day, repeat=repeat)


def _icans_episode(case: _Case, study_day: int, ae_number: str) -> None:
    """Grade 1 ICANS: ICE score 8 (cannot write a sentence or count backwards), awake; ICE 10
    the next morning."""
    plan = case.plan
    onset = _at(plan.day(study_day), 20, 30)
    ice = {"ICEORYR": "1", "ICEORMO": "1", "ICEORCTY": "1", "ICEORHSP": "1", "ICENAME": "3",
           "ICECMD": "1"}  # fmt: skip
    neuro = {"APHASIA": "N", "SEIZURE": "NONE", "MOTOR": "NONE", "ICPEDEMA": "NONE",
             "OTHERCAUSE": "N"}  # fmt: skip
    assessments: list[Row] = [
        {"ASMDTM": _dtm(onset), "ICEUNABLE": "N", **ice, "ICEWRITE": "0", "ICECOUNT": "0",
         "LOC": "AWAKENS SPONTANEOUSLY", **neuro},
        {"ASMDTM": _dtm(_at(plan.day(study_day + 1), 8)), "ICEUNABLE": "N", **ice,
         "ICEWRITE": "1", "ICECOUNT": "1", "LOC": "ALERT", **neuro},
    ]  # fmt: skip
    resolved = _at(plan.day(study_day + 1), 12)
    header = _one(
        "IG.ICANS", ICANSSTDTM=_dtm(onset), ICANSENDTM=_dtm(resolved), ICANSGRINV="1",
        ICANSTRT=["NONE"], ICANSAEID=ae_number,
    )  # fmt: skip
    rows = header | _rows("IG.ICANS.ASM", assessments)
    case.save(LOG_EVENT_OID, "F.ICANS", rows, resolved.date(), by=case.investigator)


# -- leaving the study ------------------------------------------------------------------------


def _death(case: _Case, ae_number: str) -> None:
    day = case.plan.end
    death = _one(
        "IG.DD", DTHDAT=day.isoformat(), DTHTERM="Pneumonia with respiratory failure",
        DTHPRIM="INFECTION", DTHAUTOP="N", DTHRELZM="UNLIKELY RELATED",
        DTHRELLD="UNLIKELY RELATED", DTHAEID=ae_number,
    )  # fmt: skip
    case.save(LOG_EVENT_OID, "F.DD", death, day, by=case.investigator)


def _disposition(case: _Case, stage: str, reason: str, day: date, long_term: bool | None) -> None:
    case.date_visit("SE.ET", day)
    disposition = _one(
        "IG.DS", DSSTAGE=stage, DSDECOD=reason, DSSTDAT=day.isoformat(),
        DSLTFU=None if long_term is None else _yn(long_term), DSLCDAT=day.isoformat(),
    )  # fmt: skip
    case.save("SE.ET", "F.DS", disposition, day)


_EXITS = {  # exit status -> (DS reason, enrolled in long-term follow-up, status change reason)
    "completed": ("COMPLETED", True, None),
    "withdrawn": ("WITHDRAWAL BY SUBJECT", False, "Subject withdrew consent"),
    "died": ("DEATH", False, None),
}


def _leave(case: _Case) -> None:
    """End of study after infusion: the disposition form, then the final status."""
    exit_status = case.scenario.exit
    assert exit_status is not None
    reason, long_term, why = _EXITS[exit_status]
    _disposition(case, "POST-INFUSION FOLLOW-UP", reason, case.plan.end, long_term)
    case.move(exit_status, case.plan.end, reason=why)
