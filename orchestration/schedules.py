"""The daily ingestion schedule, for a landing zone that receives yesterday's file each morning."""

from __future__ import annotations

import dagster as dg

from ml.settings import NEW_YORK
from orchestration.jobs import daily_ingestion_job

DEFAULT_AT = "06:30"


def stopped_schedule(
    name: str, job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition, cron: str, description: str
) -> dg.ScheduleDefinition:
    """A schedule in the data's time zone, off until an operator turns it on in the UI."""
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=NEW_YORK,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )


def daily_ingestion_schedule(at: str = DEFAULT_AT) -> dg.ScheduleDefinition:
    """Yesterday's partition of bronze and features at `at` (HH:MM), New York time.

    The time zone is the partitions' (America/New_York), so "yesterday" and the hour
    mean the same day and hour as the data's local dates.
    """
    try:
        hour, minute = (int(part) for part in at.split(":"))
    except ValueError as exc:
        raise ValueError(f"daily ingestion time {at!r} is not HH:MM") from exc
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"daily ingestion time {at!r} is not a time of day")
    return dg.build_schedule_from_partitioned_job(
        daily_ingestion_job,
        name="daily_ingestion_schedule",
        hour_of_day=hour,
        minute_of_hour=minute,
        description=f"Bronze and features of yesterday's partition, daily at {at} New York time.",
    )
