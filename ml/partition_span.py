"""The span of the daily partitions, from configuration: a first day and, optionally, a last one.

    PLATFORM_FIRST_DAY=2026-01-01                  # open-ended: up to yesterday in New York
    PLATFORM_FIRST_DAY=2026-01-01 PLATFORM_LAST_DAY=2026-06-30
    PLATFORM_LAST_DAY=open                         # the demo's first day, open-ended

With neither variable set the span is the demo's year, 2013. A platform that runs every
day sets the first day only: each midnight in New York adds yesterday's partition, and
the daily schedule asks for it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

from ml.settings import NEW_YORK, SettingsError

DEMO_FIRST_DAY = dt.date(2013, 1, 1)
DEMO_LAST_DAY = dt.date(2013, 12, 31)
OPEN_ENDED = ("open", "none")


def new_york_day(now: dt.datetime) -> dt.date:
    """The local New York date of an aware instant."""
    return now.astimezone(zoneinfo.ZoneInfo(NEW_YORK)).date()


@dataclass(frozen=True)
class PartitionSpan:
    first: dt.date
    last: dt.date | None
    """None: open-ended, the last partition is yesterday in New York."""

    def __post_init__(self) -> None:
        if self.last is not None and self.last < self.first:
            raise SettingsError(f"PLATFORM_LAST_DAY {self.last} is before PLATFORM_FIRST_DAY {self.first}")

    @property
    def open_ended(self) -> bool:
        return self.last is None

    def last_day(self, now: dt.datetime) -> dt.date:
        """The newest partition at `now`: the configured last day, or yesterday in New York."""
        if self.last is not None:
            return self.last
        return new_york_day(now) - dt.timedelta(days=1)

    def accepts_until(self, now: dt.datetime) -> dt.date:
        """The newest day a landing file may name without being quarantined.

        Open-ended, a file for today is early, not wrong (a feed that delivers at the end of
        its day): it waits in the landing zone until its partition exists at midnight. A day
        after a configured last day, or after today, has no partition to wait for.
        """
        return self.last if self.last is not None else new_york_day(now)

    def label(self) -> str:
        return f"{self.first}..{self.last if self.last is not None else 'yesterday (open-ended)'}"


def _day(env: Mapping[str, str], name: str) -> dt.date | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a date (YYYY-MM-DD)") from exc


def partition_span(env: Mapping[str, str]) -> PartitionSpan:
    """The configured span: PLATFORM_FIRST_DAY (default 2013-01-01) and PLATFORM_LAST_DAY.

    PLATFORM_LAST_DAY unset means open-ended once a first day is configured, and the demo's
    2013-12-31 when neither is; `open` makes the demo's span open-ended too.
    """
    first = _day(env, "PLATFORM_FIRST_DAY")
    raw_last = env.get("PLATFORM_LAST_DAY", "").strip()
    if raw_last.lower() in OPEN_ENDED:
        return PartitionSpan(first or DEMO_FIRST_DAY, None)
    last = _day(env, "PLATFORM_LAST_DAY")
    if first is None:
        return PartitionSpan(DEMO_FIRST_DAY, last or DEMO_LAST_DAY)
    return PartitionSpan(first, last)
