"""Partitions shared by the assets: one per local New York day of the configured span, and the
backfill policy that splits a range into runs under the memory budget.

The span comes from PLATFORM_FIRST_DAY / PLATFORM_LAST_DAY (`ml/partition_span.py`), read
once when the code location loads; the demo's default is 2013. Without a last day the
partitions are open-ended: Dagster adds yesterday's partition at each New York midnight.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from ml.features.flight_features import lookback_days
from ml.ingest.run_memory import RunMemory, run_memory
from ml.partition_span import PartitionSpan, partition_span
from ml.settings import NEW_YORK

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SPAN: PartitionSpan = partition_span(os.environ)
FIRST_DAY = SPAN.first
RUN_MEMORY: RunMemory = run_memory(os.environ, lookback_days())
"""The memory budget of a range run (PLATFORM_RUN_MEMORY_GIB) and the traffic it is planned for."""


def backfill_policy() -> dg.BackfillPolicy:
    """A backfill of any length from the UI is one backfill of runs of at most `days_per_run` days.

    That is a year (or `PLATFORM_SLICES_PER_RUN` slices), so a year's backfill is one run
    at any traffic: its steps work through the days in slices that stay under the budget
    (`run_slices`; three weeks at 100x). The days of the features' trailing windows come from the earlier runs, which the
    backfill daemon runs first.
    """
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=RUN_MEMORY.days_per_run())


def run_slices(days: list[dt.date]) -> list[list[dt.date]]:
    """A run's days in the slices its steps hold at once under the memory budget (`RunMemory.slices`)."""
    return RUN_MEMORY.slices(days)


def traffic_warning(flights: int, days: int) -> str | None:
    """Why a run's days may exceed the memory plan (more flights a day than planned), or None."""
    return RUN_MEMORY.overloaded(flights, days)


def daily_partitions_for(span: PartitionSpan) -> dg.DailyPartitionsDefinition:
    """Daily partitions in New York time over `span` (the end is exclusive in Dagster's terms)."""
    end = (span.last + dt.timedelta(days=1)).isoformat() if span.last is not None else None
    return dg.DailyPartitionsDefinition(start_date=span.first.isoformat(), end_date=end, timezone=NEW_YORK)


daily_partitions = daily_partitions_for(SPAN)


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days of a run: one partition or a whole range (single-run backfills)."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """Run tags that make one run of a range of days (assets with a single-run backfill policy)."""
    return {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}


def days_label(days: list[dt.date]) -> str:
    """`2013-01-06`, a range `2013-01-06..2013-01-08`, or a list where days are missing in between."""
    if len(days) == 1:
        return days[0].isoformat()
    if (days[-1] - days[0]).days == len(days) - 1:
        return f"{days[0]}..{days[-1]}"
    return ", ".join(day.isoformat() for day in days)
