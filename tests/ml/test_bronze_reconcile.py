"""A daily bronze write and its reconciliation: stored rows against landing rows minus rejects."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.ingest.batch import Batch, LandedDay
from ml.ingest.reconcile import reconcile, write_days
from ml.lake.delta import DeltaStore
from ml.lake.tables import landing_log_table, rejects_table

D1, D2, D3 = dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)
SCHEMA: dict[str, pl.DataType] = {"d": pl.Date(), "k": pl.Int64()}
TABLE = "bronze/things"


def valid(rows: list[tuple[dt.date, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def rejects(rows: list[tuple[dt.date, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"day": pl.Date(), "reason": pl.String()}, orient="row")


def landed(day: dt.date, rows: int, rejected: int) -> LandedDay:
    return LandedDay(day, f"landing/things/{day}.csv", "md5", rows, rejected)


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    return DeltaStore(str(tmp_path / "lake"))


def test_the_table_and_its_companions_are_written_for_the_same_days(store: DeltaStore) -> None:
    b = Batch(
        [landed(D1, 3, 1), landed(D3, 1, 0)],
        valid([(D1, 1), (D1, 2), (D3, 3)]),
        rejects([(D1, "bad carrier")]),
    )
    written = write_days(store, TABLE, b, "d", [D1, D3], {"step": "test"})
    assert store.read(TABLE).height == 3
    assert store.read(rejects_table(TABLE))["reason"].to_list() == ["bad carrier"]
    assert store.read(landing_log_table(TABLE))["landing_rows"].sort().to_list() == [1, 3]
    assert written.rejects.uri == store.uri(rejects_table(TABLE))
    assert written.landing_log.version == store.version(landing_log_table(TABLE))


def test_stored_rows_are_only_those_of_the_batch_days(store: DeltaStore) -> None:
    store.replace_days(TABLE, valid([(D2, 9), (D2, 10)]), "d", [D2], {"step": "seed"})
    b = Batch([landed(D1, 1, 0), landed(D3, 1, 0)], valid([(D1, 1), (D3, 3)]), rejects([]))
    written = write_days(store, TABLE, b, "d", [D1, D3], {"step": "test"})
    assert sorted(written.stored["d"].to_list()) == [D1, D3]
    summary = reconcile(b, written.stored, SCHEMA, ("d", "k"))
    assert (summary.table_rows, summary.expected_rows, summary.reconciles) == (2, 2, True)


def test_reconciliation_counts_reasons_most_frequent_first_and_names_empty_days() -> None:
    b = Batch(
        [landed(D1, 4, 3), landed(D2, 0, 0)],
        valid([(D1, 1)]),
        rejects([(D1, "rare"), (D1, "often"), (D1, "often")]),
    )
    summary = reconcile(b, valid([(D1, 1)]), SCHEMA, ("d", "k"))
    assert (summary.landing_rows, summary.rejected, summary.expected_rows) == (4, 3, 1)
    assert list(summary.reject_reasons.items()) == [("often", 2), ("rare", 1)]
    assert summary.empty_days == [D2.isoformat()]
    assert summary.reconciles and summary.duplicates == 0 and summary.schema_problems == []


def test_reconciliation_reports_missing_rows_duplicates_and_schema_drift() -> None:
    b = Batch([landed(D1, 3, 0)], valid([(D1, 1), (D1, 1), (D1, 2)]), rejects([]))
    stored = valid([(D1, 1), (D1, 1)]).with_columns(pl.col("k").cast(pl.Int32()))
    summary = reconcile(b, stored, SCHEMA, ("d", "k"))
    assert not summary.reconciles
    assert (summary.table_rows, summary.expected_rows) == (2, 3)
    assert summary.duplicates == 2
    assert summary.schema_problems == ["column k is Int32, expected Int64"]


def test_a_write_read_back_by_its_key_reconciles_against_the_whole_schema(store: DeltaStore) -> None:
    b = Batch([landed(D1, 2, 0)], valid([(D1, 1), (D1, 2)]).with_columns(v=pl.lit("x")), rejects([]))
    written = write_days(store, TABLE, b, "d", [D1], {"step": "test"}, columns=("d", "k"))
    assert written.stored.columns == ["d", "k"]
    assert written.stored_schema == {**SCHEMA, "v": pl.String()}
    summary = reconcile(b, written.stored, SCHEMA, ("d", "k"), written.stored_schema)
    assert summary.reconciles and summary.duplicates == 0
    assert summary.schema_problems == ["unexpected column v"]
