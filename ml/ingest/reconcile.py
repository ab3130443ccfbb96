"""Write a batch of days to a daily bronze table and its companions, and reconcile them.

The table, `<table>_rejects` and `<table>_landing_log` are replaced for the same days
with the same commit metadata, so a run's three versions belong together. The rows read
back from the table's new version are then set against what the landing files
delivered: stored rows must equal landing rows minus rejects.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ml.ingest.batch import Batch
from ml.lake.delta import DeltaStore, WriteResult
from ml.lake.quality import duplicate_keys, schema_problems
from ml.lake.tables import landing_log_table, rejects_table
from ml.lineage.ledger import bronze_entry


@dataclass(frozen=True)
class DailyWrite:
    table: WriteResult
    rejects: WriteResult
    landing_log: WriteResult
    stored: pl.DataFrame
    """The table's rows for the batch's days, read back from the version just written: the
    columns asked for (`write_days`' `columns`), by default all."""
    stored_schema: dict[str, pl.DataType]
    """The schema of that version, all its columns."""


@dataclass(frozen=True)
class Reconciliation:
    """What a daily bronze write stored, set against what its landing files delivered."""

    landing_rows: int
    rejected: int
    table_rows: int
    schema_problems: list[str]
    duplicates: int
    reject_reasons: dict[str, int]
    """Rejected rows per reason, most frequent first."""
    empty_days: list[str]
    """Days (ISO dates) whose landing file held no rows."""

    @property
    def expected_rows(self) -> int:
        return self.landing_rows - self.rejected

    @classmethod
    def combine(cls, parts: Sequence[Reconciliation]) -> Reconciliation:
        """One reconciliation of a run's slices (disjoint days): counts added, problems kept once."""
        reasons: Counter[str] = Counter()
        for part in parts:
            reasons.update(part.reject_reasons)
        return cls(
            landing_rows=sum(p.landing_rows for p in parts),
            rejected=sum(p.rejected for p in parts),
            table_rows=sum(p.table_rows for p in parts),
            schema_problems=list(dict.fromkeys(problem for p in parts for problem in p.schema_problems)),
            duplicates=sum(p.duplicates for p in parts),
            reject_reasons=dict(reasons.most_common()),
            empty_days=[day for p in parts for day in p.empty_days],
        )

    @property
    def reconciles(self) -> bool:
        return self.table_rows == self.expected_rows


def write_days(
    store: DeltaStore,
    table: str,
    batch: Batch,
    day_column: str,
    days: Sequence[dt.date],
    commit_metadata: Mapping[str, str],
    landing_root: str = "",
    columns: Sequence[str] = (),
) -> DailyWrite:
    """Write the batch's days with their rejects and landing log; the table's commit records its landing files.

    `columns`: the columns of the rows read back (the reconciliation needs the key only;
    reading every column of a 100x range back cost half a second).
    """
    ledger_entry = bronze_entry(batch.days, landing_root)
    result = store.replace_days(table, batch.valid, day_column, days, {**commit_metadata, **ledger_entry})
    rejects = store.replace_days(rejects_table(table), batch.rejects, "day", days, commit_metadata)
    ledger = store.replace_days(landing_log_table(table), batch.ledger(), "day", days, commit_metadata)
    day = pl.col(day_column)
    version = store.scan(table, result.version)
    stored = version.filter(day.is_between(min(days), max(days)) & day.is_in(list(days)))
    if columns:
        stored = stored.select(columns)
    return DailyWrite(result, rejects, ledger, stored.collect(), dict(version.collect_schema()))


def reconcile(
    batch: Batch,
    stored: pl.DataFrame,
    schema: Mapping[str, pl.DataType],
    key: Sequence[str],
    stored_schema: Mapping[str, pl.DataType] | None = None,
) -> Reconciliation:
    """`stored` holds at least the key; `stored_schema` is the table's (by default `stored`'s)."""
    reasons = batch.rejects.group_by("reason").len().sort("len", descending=True)
    return Reconciliation(
        landing_rows=batch.landing_rows,
        rejected=batch.rejects.height,
        table_rows=stored.height,
        schema_problems=schema_problems(
            dict(stored.schema if stored_schema is None else stored_schema), schema
        ),
        duplicates=duplicate_keys(stored, key),
        reject_reasons=dict(reasons.iter_rows()),
        empty_days=[d.day.isoformat() for d in batch.days if d.landing_rows == 0],
    )
