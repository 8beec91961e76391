"""The demo's safety board: the decisions the ZM001 board took as the 3+3 went, recorded and
signed by the sponsor through `app.escalation.decisions`, each checked against the rules.

The story (`app.demo.SCENARIOS`, days before today): three subjects at each of DL1 to DL4,
15 days apart; each level's cohort clears the day after its last subject's 28-day window,
and the board escalates a day or two later. DL4, the top dose, is expanded to 6 by the rules
to confirm it (the board notes it); once the 6 are evaluable the board accepts the tolerated
top dose and selects DL3 for the expansion.

`DemoBoard.record_until` records each decision before the first subject who needs it is
built: a decision dated on or before that subject's latest event. The subjects built before
are the ones its rules check reads (the demo builds them in infusion order), and a decision
recorded ahead of a subject's earlier dates is not seen by them (gates read the state on
their own date). A shorter demo simply stops earlier in the story.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session

from app.access import load_access
from app.db import unit_of_work
from app.escalation.decisions import DecisionRequest, record_decision
from app.escalation.gates import DecisionKind
from app.models import UserAccount
from app.study.loader import Study


@dataclass(frozen=True)
class BoardMeeting:
    """One decision of the demo's board, `days_ago` days before today."""

    days_ago: int
    kind: DecisionKind
    levels: tuple[str, ...]
    rationale: str
    minutes: str


BOARD: tuple[BoardMeeting, ...] = (
    BoardMeeting(
        420,
        DecisionKind.ESCALATE,
        ("DL2",),
        "DL1: no DLT in 3 evaluable subjects; the safety data support DL2.",
        "DSMB-ZM001-01",
    ),
    BoardMeeting(
        318,
        DecisionKind.ESCALATE,
        ("DL3",),
        "DL2: no DLT in 3 evaluable subjects; CRS grade 2 at most, one ICANS grade 1 resolved.",
        "DSMB-ZM001-02",
    ),
    BoardMeeting(
        216,
        DecisionKind.ESCALATE,
        ("DL4",),
        "DL3: no DLT in 3 evaluable subjects; one CRS grade 3 resolved within the window.",
        "DSMB-ZM001-03",
    ),
    BoardMeeting(
        114,
        DecisionKind.EXPAND,
        ("DL4",),
        "DL4, the top dose: no DLT in 3 evaluable subjects; 3 more confirm it before expansion.",
        "DSMB-ZM001-04",
    ),
    BoardMeeting(
        76,
        DecisionKind.DECLARE_MTD,
        ("DL4",),
        "DL4: no DLT in 6 evaluable subjects: the top dose is tolerated, no MTD was reached.",
        "DSMB-ZM001-05",
    ),
    BoardMeeting(
        76,
        DecisionKind.SELECT,
        ("DL3",),
        "DL3 for expansion: B-cell depletion as deep as at DL4, with less CRS.",
        "DSMB-ZM001-05",
    ),
)
"""The board's decisions, oldest first (the log is in date order)."""

_SIGNED_AT = time(10, 0)
"""When the sponsor records a meeting's decisions (UTC): the same day at every demo site."""


class DemoBoard:
    """The sponsor recording `BOARD` as the demo reaches each decision."""

    def __init__(
        self, session: Session, study: Study, sponsor: UserAccount, password: str, now: datetime
    ) -> None:
        self._session, self._study, self._password, self._now = session, study, password, now
        self._access = load_access(session, sponsor, study.id)
        self._pending = list(BOARD)

    def record_until(self, day: date) -> None:
        """Record, signed, each decision not yet recorded that is dated on or before `day`.
        Raises DecisionRefused when the rules do not support one: the story no longer fits
        the study's escalation."""
        today = self._now.date()
        while self._pending and today - timedelta(days=self._pending[0].days_ago) <= day:
            meeting = self._pending.pop(0)
            decided_on = today - timedelta(days=meeting.days_ago)
            request = DecisionRequest(
                meeting.kind, meeting.levels, decided_on, meeting.rationale, self._password,
                minutes_reference=meeting.minutes,
            )  # fmt: skip
            signed_at = min(datetime.combine(decided_on, _SIGNED_AT, UTC), self._now)
            with unit_of_work(self._session):
                record_decision(
                    self._session, self._study, self._access, request, source="demo",
                    now=signed_at,
                )  # fmt: skip


def volume_study(study: Study) -> Study:
    """`study` without its escalation casebook: no escalation gate on the write path, so a
    demo of any size can be built on it (a volume benchmark, not a 3+3 story)."""
    if study.escalation is None:
        return study
    return replace(study, escalation=study.escalation.model_copy(update={"casebook": None}))
