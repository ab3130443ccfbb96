"""How many days a run holds at once and how many it works through, under a memory budget.

A run's steps work through its days in slices (`slices`): each slice's landing files, its
bronze rows and, for the features, the slice plus the trailing window of flights they
read are in memory together, then written and let go before the next slice. A slice's
peak RSS is, to a good approximation, a fixed part (the code location, Dagster, polars,
deltalake) plus a part per flight row held. Both were measured on range runs of 1x, 10x and
100x traffic (benchmarks/scale_curves.py, benchmarks/RESULTS.md) and are the constants
below, with a margin: `days_per_slice` is the most days whose slice stays under the budget.

A run then works through its slices one after the other, up to a year of days by default
or `PLATFORM_SLICES_PER_RUN` slices (`days_per_run`), so a run's fixed cost (a process,
imports, the code location: about 2.5 s) is paid once per year rather than once per slice;
a backfill is split into runs of that many days, which Dagster's multi-run backfill policy
does when the UI launches one backfill of any length. More, smaller runs spread a backfill
over more run pods at once (the cluster's backfill pool) and retry less after a failure;
fewer, longer ones pay the fixed cost less often.

    PLATFORM_RUN_MEMORY_GIB=4         # the budget of one run (a run pod's memory limit)
    PLATFORM_FLIGHTS_PER_DAY=1000     # the traffic planned for (2013: about 920 a day)
    PLATFORM_SLICES_PER_RUN=2         # slices one run works through (default: a year's)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ml.settings import number_variable

GIB = 1024**3
MIB = 1024**2
DEFAULT_BUDGET_GIB = 4.0
DEFAULT_FLIGHTS_PER_DAY = 1_000
A_YEAR_OF_SLICES = 0
"""PLATFORM_SLICES_PER_RUN unset: a run works through up to a year of days, whatever its slices."""
MAX_DAYS_PER_RUN = 366
"""A year in one run at most: at 2013's traffic a year's range run is well under the budget."""
BASE_BYTES = 400 * MIB
"""A run worker before it reads a row: interpreter, Dagster, the code location, polars, deltalake
(a month at 1x peaks at 0.35 GiB)."""
BYTES_PER_RANGE_ROW = 1_300
"""Peak bytes per flight row of the range: CSV text, parsed frame, validated and written bronze,
the features built for it (measured 1,190 on a month at 10x with no window; plus a margin)."""
BYTES_PER_WINDOW_ROW = 450
"""Peak bytes per flight row of the trailing window the features read besides the range
(measured about 400 from 13-day runs at 100x, 2.6 GiB each; plus a margin)."""


@dataclass(frozen=True)
class RunMemory:
    budget_bytes: int
    flights_per_day: int
    window_days: int
    slices_per_run: int = A_YEAR_OF_SLICES

    def peak_bytes(self, days: int) -> int:
        """The planned peak RSS of a run whose slices hold `days` days."""
        rows = self.flights_per_day
        return BASE_BYTES + rows * (days * BYTES_PER_RANGE_ROW + self.window_days * BYTES_PER_WINDOW_ROW)

    def days_per_slice(self) -> int:
        """The most days one slice may hold under the budget (at least one, at most a year)."""
        room = self.budget_bytes - self.peak_bytes(0)
        days = room // (self.flights_per_day * BYTES_PER_RANGE_ROW) if room > 0 else 0
        return int(max(1, min(MAX_DAYS_PER_RUN, days)))

    def days_per_run(self) -> int:
        """The days one run works through: a year, or `slices_per_run` slices where that is less."""
        if self.slices_per_run == A_YEAR_OF_SLICES:
            return MAX_DAYS_PER_RUN
        return min(MAX_DAYS_PER_RUN, self.days_per_slice() * self.slices_per_run)

    def slices(self, days: Sequence[dt.date]) -> list[list[dt.date]]:
        """`days` in day order, cut into consecutive slices of at most `days_per_slice` days."""
        ordered, size = sorted(days), self.days_per_slice()
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    @property
    def fits(self) -> bool:
        """Whether a run of one day stays under the budget (the features' window alone may not)."""
        return self.peak_bytes(1) <= self.budget_bytes

    def describe(self) -> str:
        days = self.days_per_slice()
        if not self.fits:
            return (
                f"one day needs about {self.peak_bytes(1) / GIB:.2f} GiB at {self.flights_per_day:,} flights a "
                f"day (its 28-day window included), over the {self.budget_bytes / GIB:.2f} GiB budget: "
                "raise PLATFORM_RUN_MEMORY_GIB"
            )
        return (
            f"{self.days_per_run()} day(s) per run in slices of {days}: {self.flights_per_day:,} flights "
            f"a day planned, about {self.peak_bytes(days) / GIB:.2f} GiB of a {self.budget_bytes / GIB:.2f} GiB "
            "budget"
        )

    def overloaded(self, flights: int, days: int) -> str | None:
        """A warning when a run's days carried more flights a day than planned (the plan is stale)."""
        per_day = flights / max(days, 1)
        if per_day <= self.flights_per_day * 1.2:
            return None
        return (
            f"these days carried {per_day:,.0f} flights a day, PLATFORM_FLIGHTS_PER_DAY plans "
            f"{self.flights_per_day:,}: slices of {self.days_per_slice()} day(s) may exceed the "
            f"{self.budget_bytes / GIB:.1f} GiB budget (PLATFORM_RUN_MEMORY_GIB); set "
            f"PLATFORM_FLIGHTS_PER_DAY={int(per_day * 1.1)} and reload the code location"
        )


def run_memory(env: Mapping[str, str], window_days: int) -> RunMemory:
    """The budget, traffic and run length of PLATFORM_RUN_MEMORY_GIB, PLATFORM_FLIGHTS_PER_DAY and
    PLATFORM_SLICES_PER_RUN."""
    budget = number_variable(env, "PLATFORM_RUN_MEMORY_GIB", DEFAULT_BUDGET_GIB, positive=True)
    flights = number_variable(env, "PLATFORM_FLIGHTS_PER_DAY", DEFAULT_FLIGHTS_PER_DAY, positive=True)
    slices = number_variable(env, "PLATFORM_SLICES_PER_RUN", A_YEAR_OF_SLICES, positive=True, whole=True)
    return RunMemory(int(budget * GIB), int(flights), window_days, int(slices))
