"""Daily writes on S3: files of whole days in the bucket, other days of a rewritten file kept, a refused commit leaves no object."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from ml.lake import layout
from tests.storage.conftest import S3Platform

T = "features/flight_features"
DAY = "flight_date"
DAYS = [dt.date(2013, 1, 1) + dt.timedelta(days=n) for n in range(6)]


def rows(days: list[dt.date], value: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {DAY: [d for d in days for _ in range(30)], "n": list(range(30)) * len(days), "value": value},
        schema={DAY: pl.Date, "n": pl.Int64, "value": pl.Float64},
    )


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "CELL_BUDGET", 3 * 100)  # 100 rows a file: 3 days of 30


def test_a_day_inside_a_file_is_replaced_on_s3_and_its_neighbours_kept(s3_buckets: S3Platform) -> None:
    store = s3_buckets.store
    store.replace_days(T, rows(DAYS), DAY, DAYS, {})
    data = [k for k in s3_buckets.keys("lake") if k.endswith(".parquet") and "_delta_log" not in k]
    assert len(data) == 2 and all(k.endswith(".zstd.parquet") for k in data)  # two files of three days

    store.replace_days(T, rows([DAYS[1]], value=1.0), DAY, [DAYS[1]], {})

    table = store.read(T).sort(DAY, "n")
    assert table.height == 6 * 30
    assert table.filter(pl.col("value") == 1.0)[DAY].unique().to_list() == [DAYS[1]]


def test_a_refused_commit_leaves_no_object_in_the_bucket(
    s3_buckets: S3Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_buckets.store
    store.replace_days(T, rows(DAYS[:3]), DAY, DAYS[:3], {})

    def objects() -> list[str]:
        """Every key but folder markers (pyarrow's S3 filesystem leaves one where it deletes a file)."""
        return [k for k in s3_buckets.keys("lake") if not k.endswith("/")]

    before, version = objects(), store.version(T)

    def refuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise CommitFailedError("the bucket refused the log entry")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refuse)
    with pytest.raises(CommitFailedError, match="refused"):
        store.replace_days(T, rows([DAYS[1]], value=1.0), DAY, [DAYS[1]], {})

    assert objects() == before and store.version(T) == version
