"""Site-local time. Audit timestamps are UTC; what is "today" at a site (future dates, visit
windows, due and overdue, study days) is the date in the site's IANA time zone."""

from __future__ import annotations

from datetime import date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(time_zone: str, now: datetime) -> date:
    """The date at `now` (an aware datetime) in `time_zone`."""
    return now.astimezone(_zone(time_zone)).date()


def day_start(time_zone: str, day: date) -> datetime:
    """The instant (aware) at which `day` begins in `time_zone`."""
    return datetime.combine(day, time(), _zone(time_zone))


def check_time_zone(name: str) -> str:
    """`name` if it is an IANA time zone (e.g. Asia/Shanghai); ValueError saying so if not."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{name!r} is not an IANA time zone such as Asia/Shanghai") from error
    return name


def time_zone_names() -> list[str]:
    """Every IANA time zone name, sorted, for choosing a site's."""
    return sorted(available_timezones())
