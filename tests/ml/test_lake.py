"""The Delta store: predicate overwrites that replace exactly their days, or refuse."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.lake.delta import REPLACED_KEY, DeltaStore, PartitionWriteRefusedError, day_predicate

D1, D2, D3 = dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)


def frame(days: list[dt.date], n: int = 3, value: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {"d": [d for d in days for _ in range(n)], "v": [value] * (n * len(days))},
        schema={"d": pl.Date, "v": pl.Int64},
    )


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    s = DeltaStore(str(tmp_path / "lake"))
    s.replace_days("t", frame([D1, D2, D3]), "d", [D1, D2, D3], {"step": "seed"})
    return s


def test_replacing_a_day_twice_never_duplicates(store: DeltaStore) -> None:
    for _ in range(2):
        store.replace_days("t", frame([D2], n=5, value=7), "d", [D2], {"step": "again"})
    counts = dict(store.read("t").group_by("d").len().iter_rows())
    assert counts == {D1: 3, D2: 5, D3: 3}
    assert store.read("t").filter(pl.col("d") == D2)["v"].unique().to_list() == [7]


def test_rows_outside_the_days_are_refused_before_anything_is_written(store: DeltaStore) -> None:
    version = store.version("t")
    with pytest.raises(PartitionWriteRefusedError, match="outside the days being replaced"):
        store.replace_days("t", frame([D2, D3]), "d", [D2], {"step": "bad"})
    with pytest.raises(PartitionWriteRefusedError, match=r"e\.g\. d=2013-01-02"):  # a row between the days
        store.replace_days("t", frame([D1, D2, D3]), "d", [D1, D3], {"step": "bad"})
    with pytest.raises(PartitionWriteRefusedError, match="no d"):
        store.replace_days("t", frame([D2]).with_columns(pl.lit(None, pl.Date).alias("d")), "d", [D2], {})
    with pytest.raises(PartitionWriteRefusedError, match="not Date"):
        store.replace_days("t", frame([D2]).with_columns(pl.col("d").cast(pl.String)), "d", [D2], {})
    with pytest.raises(PartitionWriteRefusedError, match="no days"):
        store.replace_days("t", frame([]), "d", [], {})
    assert store.version("t") == version
    assert store.read("t").height == 9


def test_predicates_name_exactly_the_days() -> None:
    assert day_predicate("d", [D2, D1]) == "d >= '2013-01-01' AND d <= '2013-01-02'"
    assert day_predicate("d", [D1, D3]) == "d IN ('2013-01-01', '2013-01-03')"
    with pytest.raises(PartitionWriteRefusedError, match="identifier"):
        day_predicate("d; DROP", [D1])
    with pytest.raises(PartitionWriteRefusedError, match="date"):
        day_predicate("d", ["2013-01-01"])  # type: ignore[list-item]


def test_each_commit_records_who_wrote_it_and_the_write_returns_its_own_version(store: DeltaStore) -> None:
    result = store.replace_days(
        "t", frame([D3]), "d", [D3], {"dagster_run_id": "run-42", "dagster_partition": "2013-01-03"}
    )
    entry = next(h for h in store.history("t") if h["version"] == result.version)
    assert entry["dagster_run_id"] == "run-42"
    assert entry["dagster_partition"] == "2013-01-03"
    assert entry[REPLACED_KEY] == "d >= '2013-01-03' AND d <= '2013-01-03'"


def test_checkpoints_keep_the_log_short(tmp_path: Path) -> None:
    s = DeltaStore(str(tmp_path / "lake"))
    for i in range(25):
        d = D1 + dt.timedelta(days=i)
        s.replace_days("t", frame([d]), "d", [d], {})
    log = tmp_path / "lake" / "t" / "_delta_log"
    assert list(log.glob("*.checkpoint.parquet")), "no checkpoint was written"
    assert s.read("t").height == 75


def test_maintenance_compacts_and_vacuums_without_changing_data(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    for d in (D1, D2, D3):
        store.replace_days("t", frame([d], value=1), "d", [d], {})
    before = store.read("t").sort("d")
    files_before = len(store.table("t").file_uris())
    stats = store.maintain("t", retention_hours=0)
    assert stats["files_removed"] == files_before and stats["files_added"] == 1
    assert stats["files_vacuumed"] > 0
    assert store.read("t").sort("d").equals(before)
    parquet = list((tmp_path / "lake" / "t").glob("*.parquet"))
    assert len(parquet) == 1


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    s = DeltaStore(str(tmp_path / "lake"))
    with pytest.raises(Exception, match="features/x does not exist"):
        s.read("features/x")
