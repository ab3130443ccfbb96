"""How many days one run may hold, so that backfills and landing ranges stay under a memory budget.

A range run holds its days in memory: the landing files of the range, its bronze rows and,
for the features, the range plus the trailing window of flights the features read. Its
peak RSS is, to a good approximation, a fixed part (the code location, Dagster, polars,
deltalake) plus a part per flight row held. Both were measured on range runs of 1x, 10x and
100x traffic (benchmarks/scale_curves.py, benchmarks/RESULTS.md) and are the constants
below, with a margin. A backfill is then split into runs of `days_per_run` days, which
Dagster's multi-run backfill policy does when the UI launches one backfill of any length.

    PLATFORM_RUN_MEMORY_GIB=4         # the budget of one run (a run pod's memory limit)
    PLATFORM_FLIGHTS_PER_DAY=1000     # the traffic planned for (2013: about 920 a day)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ml.settings import number_variable

GIB = 1024**3
MIB = 1024**2
DEFAULT_BUDGET_GIB = 4.0
DEFAULT_FLIGHTS_PER_DAY = 1_000
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

    def peak_bytes(self, days: int) -> int:
        """The planned peak RSS of a range run of `days` days."""
        rows = self.flights_per_day
        return BASE_BYTES + rows * (days * BYTES_PER_RANGE_ROW + self.window_days * BYTES_PER_WINDOW_ROW)

    def days_per_run(self) -> int:
        """The most days whose run stays under the budget (at least one, at most a year)."""
        room = self.budget_bytes - self.peak_bytes(0)
        days = room // (self.flights_per_day * BYTES_PER_RANGE_ROW) if room > 0 else 0
        return int(max(1, min(MAX_DAYS_PER_RUN, days)))

    @property
    def fits(self) -> bool:
        """Whether a run of one day stays under the budget (the features' window alone may not)."""
        return self.peak_bytes(1) <= self.budget_bytes

    def describe(self) -> str:
        days = self.days_per_run()
        if not self.fits:
            return (
                f"one day needs about {self.peak_bytes(1) / GIB:.2f} GiB at {self.flights_per_day:,} flights a "
                f"day (its 28-day window included), over the {self.budget_bytes / GIB:.2f} GiB budget: "
                "raise PLATFORM_RUN_MEMORY_GIB"
            )
        return (
            f"{days} day(s) per run: {self.flights_per_day:,} flights a day planned, "
            f"about {self.peak_bytes(days) / GIB:.2f} GiB of a {self.budget_bytes / GIB:.2f} GiB budget"
        )

    def overloaded(self, flights: int, days: int) -> str | None:
        """A warning when a run's days carried more flights a day than planned (the plan is stale)."""
        per_day = flights / max(days, 1)
        if per_day <= self.flights_per_day * 1.2:
            return None
        return (
            f"these days carried {per_day:,.0f} flights a day, PLATFORM_FLIGHTS_PER_DAY plans "
            f"{self.flights_per_day:,}: runs of {self.days_per_run()} day(s) may exceed the "
            f"{self.budget_bytes / GIB:.1f} GiB budget (PLATFORM_RUN_MEMORY_GIB); set "
            f"PLATFORM_FLIGHTS_PER_DAY={int(per_day * 1.1)} and reload the code location"
        )


def run_memory(env: Mapping[str, str], window_days: int) -> RunMemory:
    """The budget and traffic of PLATFORM_RUN_MEMORY_GIB and PLATFORM_FLIGHTS_PER_DAY."""
    budget = number_variable(env, "PLATFORM_RUN_MEMORY_GIB", DEFAULT_BUDGET_GIB, positive=True)
    flights = number_variable(env, "PLATFORM_FLIGHTS_PER_DAY", DEFAULT_FLIGHTS_PER_DAY, positive=True)
    return RunMemory(int(budget * GIB), int(flights), window_days)
