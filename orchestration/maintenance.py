"""The maintenance job: lay out or compact small files, vacuum old ones, checkpoint the Delta log.

It maintains every Delta table it finds under the lake root, so a new table (a log the
server appends to in small batches, a new bronze source) is compacted without anyone
remembering to list it. Daily tables are kept in files of adjacent whole days
(`ml.lake.layout`), so that replacing a day stays cheap however long the table grows; the
report lists, per table, the files before and after, the most days a file holds and any
day range left for the next run because a daily write committed first.
"""

import dagster as dg
from pydantic import Field

from ml.lake.delta import VACUUM_RETENTION_HOURS
from ml.registry.model_registry import ModelRegistry
from ml.text_tables import text_table
from orchestration.schedules import stopped_schedule
from resources import LakeResource


class MaintenanceConfig(dg.Config):
    retention_hours: int = Field(
        default=VACUUM_RETENTION_HOURS,
        ge=0,
        description="Files no longer referenced for this long are deleted by vacuum.",
    )


@dg.op(
    description="Lay out daily Delta tables in day ranges, OPTIMIZE (compact) the others, VACUUM "
    "and checkpoint every table under the lake root."
)
def compact_and_vacuum(context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource) -> None:
    store = lake.store()
    needed = ModelRegistry(store).needed_versions()
    rows = []
    for table in store.tables():
        keep = sorted(needed.get(table, set()))
        if keep:
            context.log.info(f"{table}: keeping versions {keep}, which registered models were trained from")
        stats = store.maintain(table, config.retention_hours, keep)
        context.log.info(f"{table}: {stats}")
        rows.append({"table": table, **stats})
    context.log.info(
        f"maintained {len(rows)} table(s) with retention {config.retention_hours}h\n{text_table(rows)}"
    )


@dg.job(description="Weekly Delta maintenance of the lake.", tags={"dagster/max_retries": "0"})
def maintenance() -> None:
    compact_and_vacuum()


maintenance_schedule = stopped_schedule(
    "weekly_maintenance", maintenance, "0 3 * * 0", "Delta maintenance on Sundays at 03:00 New York time."
)
