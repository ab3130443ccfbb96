"""Freshness: how long what has arrived upstream has waited to reach a table.

A table is stale when a day that reached its upstream (a landing file for bronze, a bronze
day for the features) has waited longer than `lag` without reaching it. That holds on a
replay of old data as on live traffic, because it measures the platform, not the
calendar; a live deployment adds `max_age_days`: the newest day must also be at most that
many days before today (in the data's time zone), so a feed that stops is noticed too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FreshnessLimits:
    lag: dt.timedelta
    max_age_days: int = 0
    """0: off (replays of old data); else the newest day may be at most this many days old."""


@dataclass(frozen=True)
class Freshness:
    newest_day: dt.date | None
    waiting: dict[dt.date, float]
    """Upstream days not in the table yet, with the seconds each has waited."""
    stale: dict[dt.date, float]
    """The waiting days that have waited longer than the lag."""
    too_old: bool
    limits: FreshnessLimits

    @property
    def passed(self) -> bool:
        return not self.stale and not self.too_old

    def explanation(self) -> str:
        lag = self.limits.lag.total_seconds()
        parts = []
        if self.stale:
            days = ", ".join(f"{day} ({seconds:.0f}s)" for day, seconds in sorted(self.stale.items()))
            parts.append(f"{len(self.stale)} day(s) waited longer than {lag:.0f}s: {days}")
        if self.too_old:
            parts.append(
                f"the newest day {self.newest_day} is more than {self.limits.max_age_days} day(s) old"
            )
        if not parts:
            waiting = f"; {len(self.waiting)} day(s) on their way" if self.waiting else ""
            parts.append(f"fresh: newest day {self.newest_day}{waiting}")
        return "; ".join(parts)


def judge(
    newest_day: dt.date | None,
    arrived: Mapping[dt.date, dt.datetime],
    now: dt.datetime,
    today: dt.date,
    limits: FreshnessLimits,
) -> Freshness:
    """`arrived`: the upstream days not in the table, with when each reached the upstream."""
    waiting = {day: max(0.0, (now - at).total_seconds()) for day, at in arrived.items()}
    lag = limits.lag.total_seconds()
    stale = {day: seconds for day, seconds in waiting.items() if seconds > lag}
    too_old = limits.max_age_days > 0 and (
        newest_day is None or (today - newest_day).days > limits.max_age_days
    )
    return Freshness(newest_day, waiting, stale, too_old, limits)
