"""Daily writes as files of whole days: exact replacement, other days kept, failures leave nothing behind."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from ml.lake import day_files, layout
from ml.lake.delta import DeltaStore

T = "features/flight_features"
DAY = "flight_date"
FIRST = dt.date(2013, 1, 1)
DAYS = [FIRST + dt.timedelta(days=n) for n in range(12)]


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "CELL_BUDGET", 3 * 100)  # 100 rows a file at 3 columns: 3 days of 30


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    return DeltaStore(str(tmp_path / "lake"))


def rows(days: list[dt.date], value: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {DAY: [d for d in days for _ in range(30)], "n": list(range(30)) * len(days), "value": value},
        schema={DAY: pl.Date, "n": pl.Int64, "value": pl.Float64},
    )


def parquet_files(store: DeltaStore) -> set[str]:
    return {p.name for p in Path(store.uri(T)).glob("*.parquet")}


def live(store: DeltaStore) -> list[layout.DataFile]:
    found = layout.live_files(store.table(T), DAY)
    assert found is not None
    return sorted(found, key=lambda f: f.first)


def values(store: DeltaStore) -> dict[dt.date, list[float]]:
    frame = store.read(T).group_by(DAY).agg(pl.col("value").sort()).sort(DAY)
    return dict(frame.iter_rows())


def test_days_are_packed_whole_within_the_budget() -> None:
    d = [FIRST + dt.timedelta(days=n) for n in range(5)]
    packed = layout.pack_days([(d[0], 40), (d[1], 40), (d[2], 40), (d[3], 250), (d[4], 10)], 100)
    assert [(b.first, b.last) for b in packed] == [
        (d[0], d[1]),
        (d[2], d[2]),
        (d[3], d[3]),
        (d[4], d[4]),
    ]
    assert [b.rows for b in packed] == [80, 40, 250, 10]


def test_a_range_is_written_as_zstd_files_of_whole_days(store: DeltaStore) -> None:
    store.replace_days(T, rows(DAYS), DAY, DAYS, {})
    found = live(store)
    assert [(f.first, f.last, f.rows) for f in found] == [(DAYS[i], DAYS[i + 2], 90) for i in range(0, 12, 3)]
    assert all(name.endswith(".zstd.parquet") for name in parquet_files(store))
    assert store.read(T).sort(DAY, "n").equals(rows(DAYS))


def test_replacing_a_day_inside_a_file_keeps_its_other_days(store: DeltaStore) -> None:
    store.replace_days(T, rows(DAYS), DAY, DAYS, {})
    holder = next(f for f in live(store) if f.first <= DAYS[4] <= f.last)

    store.replace_days(T, rows([DAYS[4]], value=1.0), DAY, [DAYS[4]], {})

    assert holder.path not in {f.path for f in live(store)}
    assert values(store) == {d: [1.0 if d == DAYS[4] else 0.0] * 30 for d in DAYS}
    assert store.read(T).height == 12 * 30


def test_replacing_days_that_are_not_adjacent(store: DeltaStore) -> None:
    store.replace_days(T, rows(DAYS), DAY, DAYS, {})
    picked = [DAYS[1], DAYS[7]]

    store.replace_days(T, rows(picked, value=2.0), DAY, picked, {})

    assert values(store) == {d: [2.0 if d in picked else 0.0] * 30 for d in DAYS}


def test_a_commit_that_lands_first_is_replaced_not_duplicated(
    store: DeltaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits the same day between our snapshot and our commit: ours starts over."""
    store.replace_days(T, rows(DAYS[:3]), DAY, DAYS[:3], {})
    real = day_files._Writer.write
    raced: list[int] = []

    def write_with_a_race(self, frame, column):  # type: ignore[no-untyped-def]
        if not raced:
            raced.append(1)
            with monkeypatch.context() as m:
                m.setattr(day_files._Writer, "write", real)
                store.replace_days(T, rows([DAYS[1]], value=5.0), DAY, [DAYS[1]], {"who": "other"})
        return real(self, frame, column)

    monkeypatch.setattr(day_files._Writer, "write", write_with_a_race)
    result = store.replace_days(T, rows([DAYS[1]], value=1.0), DAY, [DAYS[1]], {"who": "us"})

    assert values(store) == {DAYS[0]: [0.0] * 30, DAYS[1]: [1.0] * 30, DAYS[2]: [0.0] * 30}
    assert store.history(T, 1)[0]["who"] == "us" and result.version == store.version(T)
    referenced = {Path(u).name for u in store.table(T).file_uris()}
    assert parquet_files(store) - referenced <= {
        Path(p).name for v in range(store.version(T)) for p in DeltaTable(store.uri(T), version=v).file_uris()
    }, "a file no version reads was left behind"


def test_a_failed_commit_leaves_the_table_and_its_folder_as_they_were(
    store: DeltaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.replace_days(T, rows(DAYS[:3]), DAY, DAYS[:3], {})
    version, before = store.version(T), parquet_files(store)

    def refuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise CommitFailedError("the store refused the log entry")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refuse)
    with pytest.raises(CommitFailedError, match="refused"):
        store.replace_days(T, rows([DAYS[1]], value=1.0), DAY, [DAYS[1]], {})

    assert store.version(T) == version and parquet_files(store) == before
    assert values(store) == {d: [0.0] * 30 for d in DAYS[:3]}


def test_a_commit_that_landed_before_an_error_is_reported_as_written(
    store: DeltaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the log entry was written (a post-commit step) must not delete the files it references."""
    store.replace_days(T, rows(DAYS[:3]), DAY, DAYS[:3], {})
    real = DeltaTable.create_write_transaction

    def land_then_fail(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(self, *args, **kwargs)
        raise CommitFailedError("checkpoint failed")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", land_then_fail)
    result = store.replace_days(T, rows([DAYS[1]], value=1.0), DAY, [DAYS[1]], {})

    assert result.version == store.version(T)
    assert values(store) == {DAYS[0]: [0.0] * 30, DAYS[1]: [1.0] * 30, DAYS[2]: [0.0] * 30}


def test_a_table_it_cannot_write_exactly_goes_through_delta_rs(store: DeltaStore) -> None:
    """A table whose column is not nullable: delta-rs's writer enforces it, so it writes."""
    schema = pa.schema(
        [pa.field(DAY, pa.date32(), nullable=False), ("n", pa.int64()), ("value", pa.float64())]
    )
    DeltaTable.create(store.uri(T), schema, configuration=layout.stats_configuration(DAY))
    frame = rows(DAYS[:2])
    assert day_files.unsupported(store.table(T), frame) == "a column that is not nullable"

    store.replace_days(T, frame, DAY, DAYS[:2], {})

    assert store.read(T).sort(DAY, "n").equals(frame)
    assert not any(name.endswith(".zstd.parquet") for name in parquet_files(store))
