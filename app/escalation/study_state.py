"""The study's escalation as its casebooks and the board's decisions make it, on a given day.

`study_escalation` reads every subject assigned a dose level in the escalation or expansion
phase, reads each one's facts from the casebook (`app.escalation.facts`), and replays the
escalation subjects' outcomes through the engine in the order they became known: an
infusion on its day, a DLT on its onset, a withdrawal on its date, a completed window the day
after its last day. Outcomes known on a day come before that day's infusions. Only what is
dated up to the day counts, so the state on an infusion's date is the state the site saw.

The board's recorded decisions then shape what may happen (`StudyEscalation.decision`): the
engine recommends, the board opens. A board pause or stop halts every infusion; an MTD or a
tolerated top dose accepted by the board waits for the board to select the expansion levels;
a selection opens those levels to the expansion phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlmodel import Session, col

from app.checks.subject_data import load_subject_data
from app.escalation.engine import Decision, Escalation, LevelStatus, Outcome, State
from app.escalation.facts import compile_facts, subject_facts
from app.escalation.gates import OPENING, BoardDecision, DecisionKind, infusion_refusal
from app.escalation.outcomes import SubjectFacts, off_target, outcome_of, window_end
from app.escalation.records import BoardDecisionRecord
from app.models import Subject
from app.study.escalation_rules import EscalationCasebook, EscalationRules
from app.study.loader import Study


@dataclass(frozen=True)
class EscalationSubject:
    """A subject at a dose level: the casebook's facts and the outcome on the day."""

    subject: Subject
    pseudonym: str
    """What the escalation page and the board report call the subject: level and order of
    enrolment at it (`DL2-3`, `DL3-E1` in the expansion), never the screening number."""
    level: str
    expansion: bool
    facts: SubjectFacts
    outcome: Outcome
    window_end: date | None

    def days_remaining(self, today: date) -> int | None:
        """Days of the DLT window left after today (0 on its last day); None when the
        window is over or the subject was never infused."""
        if self.window_end is None or self.outcome != Outcome.PENDING:
            return None
        return (self.window_end - today).days if today <= self.window_end else None


@dataclass(frozen=True)
class StudyEscalation:
    """The escalation on `today`: the engine fed with the escalation subjects, every subject
    at a level, and the board's decisions."""

    rules: EscalationRules
    casebook: EscalationCasebook
    today: date
    engine: Escalation
    subjects: tuple[EscalationSubject, ...]
    log: tuple[BoardDecisionRecord, ...]
    """Every recorded decision, later ones too (an infusion dated before the decision that
    opened its level is told so), in date order."""

    @property
    def decisions(self) -> tuple[BoardDecisionRecord, ...]:
        """The decisions taken by `today`."""
        return tuple(d for d in self.log if d.decided_on <= self.today)

    @property
    def recommendation(self) -> Decision:
        """What the rules say, before the board's decisions."""
        return self.engine.current()

    @property
    def board(self) -> list[BoardDecision]:
        """The whole log, for the gates (`app.escalation.gates.infusion_refusal`)."""
        return [BoardDecision(DecisionKind(d.kind), d.level_codes, d.decided_on) for d in self.log]

    def latest(self, *kinds: DecisionKind) -> BoardDecisionRecord | None:
        found = [d for d in self.decisions if d.kind in kinds]
        return found[-1] if found else None

    @property
    def decision(self) -> Decision:
        """The state as the board's decisions shape the recommendation (module docstring)."""
        engine = self.recommendation
        stop = self.latest(DecisionKind.STOP)
        if stop is not None:
            return Decision(
                State.ENROLLMENT_CLOSED, None,
                f"The board stopped enrolment on {stop.decided_on.isoformat()}: {stop.rationale}",
            )  # fmt: skip
        pause = self.latest(DecisionKind.PAUSE, DecisionKind.RESUME)
        if pause is not None and pause.kind == DecisionKind.PAUSE:
            return Decision(
                State.PAUSED_REVIEW, engine.level,
                f"The board paused infusions on {pause.decided_on.isoformat()}: "
                f"{pause.rationale} (the rules: {engine.reason})",
            )  # fmt: skip
        if engine.state == State.ENROLLMENT_CLOSED:
            return engine
        selection = self.latest(DecisionKind.SELECT)
        if selection is not None:
            levels = " and ".join(selection.level_codes)
            reviews = "".join(f" {self._review(level)}" for level in selection.level_codes)
            return Decision(
                State.EXPANSION, ",".join(selection.level_codes),
                f"The board selected {levels} for expansion on "
                f"{selection.decided_on.isoformat()}: up to {self.rules.max_cohort} more "
                f"subjects at each.{reviews.rstrip()}",
            )  # fmt: skip
        if engine.state in (State.MTD_DECLARED, State.TOP_DOSE_TOLERATED):
            accepted = self.latest(DecisionKind.DECLARE_MTD)
            if accepted is not None and accepted.level_codes == (engine.level,):
                return Decision(
                    State.DSMB_SELECTION, engine.level,
                    f"{engine.reason} The board accepted this on "
                    f"{accepted.decided_on.isoformat()}; it selects 1 to "
                    f"{self.rules.expansion_levels} levels to expand.",
                )  # fmt: skip
        return engine

    def _review(self, level: str) -> str:
        """The spec's proposed expansion rule (§2.4, "After escalation ends"): the board
        reviews a level whose DLT rate over all its evaluable subjects, escalation and
        expansion, reaches 1 in 3 with the full cohort evaluable. Words, not a pause: the
        protocol gives no stopping rule for the expansion."""
        at = [s for s in self.subjects if s.level == level]
        dlt = sum(s.outcome == Outcome.DLT for s in at)
        evaluable = dlt + sum(s.outcome == Outcome.NO_DLT for s in at)
        if evaluable < self.rules.max_cohort or 3 * dlt < evaluable:
            return ""
        return (
            f"{level} has {dlt} DLTs in {evaluable} evaluable subjects (at least 1 in 3): the "
            "board should review its expansion."
        )

    @property
    def infused(self) -> int:
        """Subjects infused in either phase."""
        return sum(s.outcome != Outcome.NOT_INFUSED for s in self.subjects)

    def expansion_infused(self, level: str | None = None) -> int:
        return sum(
            s.expansion and s.outcome != Outcome.NOT_INFUSED and level in (None, s.level)
            for s in self.subjects
        )

    # -- the gates ----------------------------------------------------------------------------

    def enrolment_refusal(self, level: str | None, phase: str | None) -> str | None:
        """Why a subject may not be enrolled at `level` in `phase` today (EC024); None: may.
        Room in the cohort is checked at infusion, not here: an enrolled subject waits weeks
        for the product, and may replace one who is not infused."""
        if phase == self.casebook.expansion_phase:
            return self._halted() or self._expansion_refusal(level)
        if phase != self.casebook.escalation_phase:
            return None
        if level is None or level not in self.engine.counts:
            return f"Choose a dose level of the study, not {level!r} (EC024)."
        return self._halted() or self._paused_above(level) or self._opening_refusal(level)

    def infusion_refusal(self, level: str, phase: str | None, on: date) -> str | None:
        """Why an infusion at `level` in `phase` on `on` is refused (EC030-EC032); None: it
        may go ahead. The state is the one on `on` (`study_escalation(today=on)`, without
        the subject being infused)."""
        halted = self._halted()
        if halted:
            return halted
        if phase == self.casebook.expansion_phase:
            return self._expansion_refusal(level)
        earlier = [
            s.facts.infused_on
            for s in self.subjects
            if s.level == level and not s.expansion and s.facts.infused_on is not None
        ]
        return infusion_refusal(
            self.engine, self.board, level, on, sorted(earlier),
            also_infused=self.expansion_infused(), forced=self.forced(level),
        )  # fmt: skip

    def forced(self, level: str) -> bool:
        """The board's latest decision naming `level` opened it against the rules (EC060)."""
        naming = [d for d in self.decisions if level in d.level_codes and d.kind in OPENING]
        return bool(naming) and naming[-1].override

    def _halted(self) -> str | None:
        """Why nothing may be infused (the cap, the board's stop or pause), if so."""
        if self.infused >= self.rules.max_infused:
            return (
                f"The study has infused its cap of {self.rules.max_infused} subjects: "
                "enrolment is closed (EC032)."
            )
        decision = self.decision
        board_pause = self.latest(DecisionKind.PAUSE, DecisionKind.RESUME)
        paused = board_pause is not None and board_pause.kind == DecisionKind.PAUSE
        if decision.state == State.ENROLLMENT_CLOSED or paused:
            return decision.reason
        return None

    def _paused_above(self, level: str) -> str | None:
        """The rules' pause after a late DLT at a lower level stops the levels above it."""
        engine = self.recommendation
        levels = self.engine.levels
        if engine.state == State.PAUSED_REVIEW and engine.level is not None:
            if levels.index(level) > levels.index(engine.level):
                return f"Infusions above {engine.level} are paused: {engine.reason}"
        return None

    def _opening_refusal(self, level: str) -> str | None:
        """An escalation level is open for enrolment when the rules open it and, above the
        first, the board has opened it."""
        status = self.engine.counts[level].status
        forced = self.forced(level) and status != LevelStatus.EXCEEDED
        if status not in (LevelStatus.OPEN_A, LevelStatus.OPEN_B) and not forced:
            return f"{level} is not open for enrolment (it is {status}; EC024)."
        if level != self.engine.levels[0] and not any(
            d.kind in OPENING and level in d.level_codes for d in self.decisions
        ):
            return f"No board decision has opened {level} yet (EC024, EC030)."
        return None

    def _expansion_refusal(self, level: str | None) -> str | None:
        selection = self.latest(DecisionKind.SELECT)
        if selection is None or level not in selection.level_codes:
            chosen = " and ".join(selection.level_codes) if selection else "none yet"
            return (
                f"{level} is not a level the board selected for expansion (selected: {chosen}; "
                "EC024, EC032)."
            )
        if self.expansion_infused(level) >= self.rules.max_cohort:
            return f"{level}'s expansion has its {self.rules.max_cohort} subjects infused (EC032)."
        return None


def study_escalation(
    session: Session, study: Study, today: date, *, excluding: int | None = None
) -> StudyEscalation:
    """The study's escalation on `today` (module docstring), leaving out the subject with id
    `excluding` (the one whose infusion is being checked). The study must have escalation
    rules with a casebook part."""
    rules = study.escalation
    assert rules is not None and rules.casebook is not None
    casebook = rules.casebook
    levels = tuple(level.code for level in study.info.dose_levels)
    compiled = compile_facts(
        casebook.subject_facts, frozenset(f.name for f in study.forms.values())
    )
    form_oids = [form.oid for name in compiled.forms if (form := study.form_by_name(name))]
    statement = (
        select(Subject)
        .where(
            col(Subject.study_id) == study.id,
            col(Subject.dose_level).in_(levels),
            col(Subject.phase).in_((casebook.escalation_phase, casebook.expansion_phase)),
        )
        .order_by(col(Subject.id))
    )
    rows = [s for s in session.execute(statement).scalars() if s.id != excluding]
    subjects = _subjects(study, rules, casebook, session, rows, form_oids, today)
    decisions = session.execute(
        select(BoardDecisionRecord)
        .where(col(BoardDecisionRecord.study_id) == study.id)
        .order_by(col(BoardDecisionRecord.decided_on), col(BoardDecisionRecord.id))
    ).scalars()
    engine = Escalation(rules, levels)
    escalating = [s for s in subjects if not s.expansion]
    for _, _, index, outcome in sorted(_timeline(escalating, rules, today)):
        engine.record(escalating[index].pseudonym, escalating[index].level, outcome)
    return StudyEscalation(rules, casebook, today, engine, subjects, tuple(decisions))


def _subjects(
    study: Study,
    rules: EscalationRules,
    casebook: EscalationCasebook,
    session: Session,
    rows: Sequence[Subject],
    form_oids: list[str],
    today: date,
) -> tuple[EscalationSubject, ...]:
    found = []
    numbers: dict[tuple[str, bool], int] = {}
    for subject in rows:
        assert subject.dose_level is not None
        expansion = subject.phase == casebook.expansion_phase
        data = load_subject_data(session, study, subject, form_oids)
        facts = subject_facts(study, data, today)
        if facts.infused_on is not None and facts.infused_on > today:
            facts = SubjectFacts(None)  # not infused yet on the day
        key = (subject.dose_level, expansion)
        number = numbers[key] = numbers.get(key, 0) + 1
        infused_on = facts.infused_on
        found.append(
            EscalationSubject(
                subject,
                f"{subject.dose_level}-{'E' if expansion else ''}{number}",
                subject.dose_level,
                expansion,
                facts,
                outcome_of(rules, facts, today),
                window_end(rules, infused_on) if infused_on else None,
            )
        )
    return tuple(sorted(found, key=lambda s: (s.facts.infused_on or date.max, s.subject.id or 0)))


def _timeline(
    subjects: Sequence[EscalationSubject], rules: EscalationRules, today: date
) -> list[tuple[date, int, int, Outcome]]:
    """Each outcome of each infused subject (by index in `subjects`, in infusion order) with
    the day it became known (module docstring), up to `today`, unsorted. Outcomes known on a
    day sort before that day's infusions; an outcome known on the subject's own infusion day
    (a DLT on day 0, a dose out of tolerance) is its infusion's."""
    events: list[tuple[date, int, int, Outcome]] = []
    for index, entry in enumerate(subjects):
        infused_on = entry.facts.infused_on
        if infused_on is None:
            continue
        final, day = entry.outcome, _known_on(entry, rules, infused_on)
        if final == Outcome.PENDING or day != infused_on:
            events.append((infused_on, _INFUSION, index, Outcome.PENDING))
        if final != Outcome.PENDING and day <= today:
            events.append((day, _OUTCOME if day != infused_on else _INFUSION, index, final))
    return events


_OUTCOME, _INFUSION = 0, 1


def _known_on(entry: EscalationSubject, rules: EscalationRules, infused_on: date) -> date:
    """The day the subject's outcome became known (its infusion day while pending)."""
    last = window_end(rules, infused_on)
    match entry.outcome:
        case Outcome.DLT:
            return min(d for d in entry.facts.dlt_onsets if infused_on <= d <= last)
        case Outcome.NOT_EVALUABLE:  # off target at once; else on leaving or at the window's end
            ended = entry.facts.ended_on
            if off_target(rules, entry.facts):
                return infused_on
            return max(ended if ended and ended <= last else last + timedelta(days=1), infused_on)
        case Outcome.NO_DLT:
            return last + timedelta(days=1)
    return infused_on
