"""Partitions shared by the assets: one per local New York day of 2013."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ml.settings import NEW_YORK

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(),
    end_date=(LAST_DAY + dt.timedelta(days=1)).isoformat(),
    timezone=NEW_YORK,
)


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
