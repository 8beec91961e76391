"""How old a query is, as its site counts days: the days from the site's local date of its
opening to the site's today (a query opened at 23:00 UTC is a day older in Shanghai). The
query list, its filters and the dashboard's ageing chart all count with these, in SQL: "at
most N days old" at a site compares `opened_at` with the UTC instant the site's local day N
days ago began, so no query is loaded to be aged in Python."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, false, or_, true
from sqlmodel import col

from app.models import Query, Subject
from app.site_time import day_start, local_date


@dataclass(frozen=True)
class AgeBand:
    """Queries aged `low` to `high` days, both included (no `high`: and older)."""

    label: str
    low: int
    high: int | None = None


AGE_BANDS = (
    AgeBand("0-7", 0, 7), AgeBand("8-14", 8, 14), AgeBand("15-30", 15, 30), AgeBand(">30", 31),
)  # fmt: skip
"""The bands of the dashboard's ageing chart and of the query list's age filter."""


def band(label: str | None) -> AgeBand | None:
    """The band labelled `label`, or None."""
    return next((b for b in AGE_BANDS if b.label == label), None)


def age_days(time_zone: str, opened_at: datetime, now: datetime) -> int:
    """Days from the local date of `opened_at` to the local date of `now`, at the site."""
    return (local_date(time_zone, now) - local_date(time_zone, opened_at)).days


def _since(time_zone: str, now: datetime, days: int) -> datetime:
    """When the site's local day `days` days before today began."""
    return day_start(time_zone, local_date(time_zone, now) - timedelta(days=days))


def at_most(time_zones: Mapping[int, str], now: datetime, days: int) -> ColumnElement[bool]:
    """Queries (in a statement joined to their subject) at most `days` old at their site.
    `time_zones` holds every site the statement may return; another site matches nothing."""
    return or_(
        false(),
        *(
            and_(col(Subject.site_id) == site, col(Query.opened_at) >= _since(zone, now, days))
            for site, zone in time_zones.items()
        ),
    )


def older_than(time_zones: Mapping[int, str], now: datetime, days: int) -> ColumnElement[bool]:
    """Queries more than `days` old at their site (as `at_most`, the other side)."""
    return or_(
        false(),
        *(
            and_(col(Subject.site_id) == site, col(Query.opened_at) < _since(zone, now, days))
            for site, zone in time_zones.items()
        ),
    )


def in_band(time_zones: Mapping[int, str], now: datetime, age: AgeBand) -> ColumnElement[bool]:
    """Queries whose age at their site is in `age`."""
    older = older_than(time_zones, now, age.low - 1) if age.low > 0 else true()
    younger = at_most(time_zones, now, age.high) if age.high is not None else true()
    return and_(older, younger)
