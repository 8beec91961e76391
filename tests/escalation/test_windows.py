"""A subject's DLT window in words, as the casebook and the escalation page say it."""

from __future__ import annotations

from datetime import date, timedelta

from app.escalation.engine import Outcome
from app.web.escalation_context import window_on

D0 = date(2026, 3, 2)
ENDS = D0 + timedelta(days=28)


def test_a_subject_in_the_window_has_its_day_and_days_left() -> None:
    window = window_on(28, D0, ENDS, Outcome.PENDING, D0 + timedelta(days=10))
    assert window is not None
    assert window.text == "DLT window: day 10 of 28, ends 2026-03-30 (18 days left)"
    last = window_on(28, D0, ENDS, Outcome.PENDING, ENDS - timedelta(days=1))
    assert last is not None and last.text.endswith("(1 day left)")
    on_its_last_day = window_on(28, D0, ENDS, Outcome.PENDING, ENDS)
    assert on_its_last_day is not None and on_its_last_day.days_left == 0


def test_a_window_over_or_ended_early_says_so() -> None:
    done = window_on(28, D0, ENDS, Outcome.NO_DLT, ENDS + timedelta(days=1))
    assert done is not None and done.text == "DLT window completed"
    toxic = window_on(28, D0, ENDS, Outcome.DLT, D0 + timedelta(days=5))
    assert toxic is not None and toxic.text == "DLT window: DLT (it ends 2026-03-30)"
    after = window_on(28, D0, ENDS, Outcome.DLT, ENDS + timedelta(days=3))
    assert after is not None and after.text == "DLT window completed"
    assert window_on(28, None, None, Outcome.NOT_INFUSED, D0) is None
