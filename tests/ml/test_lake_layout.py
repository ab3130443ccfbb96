"""Maintenance keeps a daily table in day-range files: one day's rewrite touches one small file."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from ml.lake import layout, relayout
from ml.lake.delta import MAINTENANCE, OPERATION_KEY, TABLE_CONFIGURATION, DeltaStore, LineageError
from ml.lake.tables import FEATURES_TABLE
from ml.lineage.ledger import features_entry, lineage_commits, writer_of

T = FEATURES_TABLE
DAY = "flight_date"
FIRST = dt.date(2013, 1, 1)
DAYS = [FIRST + dt.timedelta(days=n) for n in range(60)]
BIG = DAYS[20]
"""A day with more rows than a file may hold: it stays alone."""
ROW_BUDGET = 100
"""Rows of a merged file at the frames' 3 columns (CELL_BUDGET 300 in these tests)."""


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "CELL_BUDGET", 3 * ROW_BUDGET)


def rows(days: list[dt.date], value: float = 0.0) -> pl.DataFrame:
    """30 rows a day (250 on BIG), keyed by (day, n)."""
    counts = [250 if d == BIG else 30 for d in days]
    return pl.DataFrame(
        {
            DAY: [d for d, c in zip(days, counts, strict=True) for _ in range(c)],
            "n": [n for c in counts for n in range(c)],
            "value": [value] * sum(counts),
        },
        schema={DAY: pl.Date, "n": pl.Int64, "value": pl.Float64},
    )


def by_key(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(DAY, "n")


def files(store: DeltaStore) -> list[layout.DataFile]:
    found = layout.live_files(store.table(T), DAY)
    assert found is not None
    return sorted(found, key=lambda f: f.first)


def daily(store: DeltaStore) -> None:
    for d in DAYS:
        store.replace_days(T, rows([d]), DAY, [d], {"step": "daily"})


def range_run(store: DeltaStore) -> None:
    store.replace_days(T, rows(DAYS), DAY, DAYS, {"step": "range"})


def range_run_by_delta_rs(store: DeltaStore) -> None:
    """A range run as delta-rs's writer makes it (tables written before day files): files cut by size, across days."""
    write_deltalake(
        store.uri(T), rows(DAYS).to_arrow(), mode="overwrite", configuration=layout.stats_configuration(DAY)
    )


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    return DeltaStore(str(tmp_path / "lake"))


def assert_laid_out(found: list[layout.DataFile]) -> None:
    """Days in disjoint ranges, whole; a file over the budget holds one day; no neighbours could merge."""
    for before, after in itertools.pairwise(found):
        assert before.last < after.first, (before, after)
        assert before.rows + after.rows > ROW_BUDGET, (before, after)
    for f in found:
        assert f.rows <= ROW_BUDGET or f.days == 1, f


@pytest.mark.parametrize(
    "write", [daily, range_run_by_delta_rs], ids=["daily writes", "one range run by delta-rs"]
)
def test_maintenance_lays_out_day_ranges_and_keeps_the_rows(
    store: DeltaStore, write: Callable[[DeltaStore], None]
) -> None:
    write(store)
    before = by_key(store.read(T))
    files_before = len(store.table(T).file_uris())

    stats = store.maintain(T, retention_hours=0)

    found = files(store)
    assert_laid_out(found)
    assert max(f.days for f in found) == 3 and len(found) < len(DAYS) / 2  # 30-row days merge three to a file
    assert [f for f in found if f.first <= BIG <= f.last] == [f for f in found if f.first == f.last == BIG]
    assert stats["files_before"] == files_before and stats["files_after"] == len(found)
    assert stats["max_days_per_file"] == 3 and stats["skipped"] == "none"
    assert by_key(store.read(T)).equals(before)
    assert store.history(T, 3)[-1][OPERATION_KEY] == MAINTENANCE


def test_a_range_run_is_written_laid_out(store: DeltaStore) -> None:
    """Its files are those maintenance would make: whole days, packed within the budget."""
    range_run(store)
    before = {f.path for f in files(store)}
    assert_laid_out(files(store))
    assert max(f.days for f in files(store)) == 3

    stats = store.maintain(T, retention_hours=0)

    assert (stats["files_added"], stats["files_removed"]) == (0, 0)
    assert {f.path for f in files(store)} == before
    assert by_key(store.read(T)).equals(by_key(rows(DAYS)))


def shuffled(frame: pl.DataFrame) -> pl.DataFrame:
    order = list(range(frame.height))
    random.Random(7).shuffle(order)
    return frame[order]


def in_chunks(frame: pl.DataFrame) -> pl.DataFrame:
    """Sorted, and known to be (polars then sorts nothing), in four chunks, which delta-rs writes side by side."""
    size = frame.height // 4
    parts = [frame.slice(i * size, size if i < 3 else frame.height) for i in range(4)]
    return pl.concat(parts, rechunk=False).set_sorted(DAY)


def in_chunks_unflagged(frame: pl.DataFrame) -> pl.DataFrame:
    """Sorted in four chunks, without polars knowing it is (the write checks the order itself)."""
    size = frame.height // 4
    return pl.concat(
        [frame.slice(i * size, size if i < 3 else frame.height) for i in range(4)], rechunk=False
    )


@pytest.mark.parametrize("arrange", [shuffled, in_chunks, in_chunks_unflagged])
def test_a_range_run_writes_runs_of_days(
    store: DeltaStore, monkeypatch: pytest.MonkeyPatch, arrange: Callable[[pl.DataFrame], pl.DataFrame]
) -> None:
    """However the rows arrive, the files of a range run each hold a run of days, meeting only at a boundary."""
    monkeypatch.setattr(layout, "WRITE_TARGET_BYTES", 1)  # delta-rs then closes a file every 1024 rows
    store.replace_days(T, arrange(rows(DAYS)), DAY, DAYS, {})
    found = files(store)
    assert len(found) >= 2
    for before, after in itertools.pairwise(found):
        assert before.last <= after.first


def test_a_one_day_rewrite_after_maintenance_rewrites_only_the_file_of_its_range(store: DeltaStore) -> None:
    range_run(store)
    store.maintain(T, retention_hours=0)
    day = DAYS[31]
    (holder,) = [f for f in files(store) if f.first <= day <= f.last]
    assert holder.days == 3
    before = {f.path: f for f in files(store)}

    store.replace_days(T, rows([day], value=1.0), DAY, [day], {})

    after = {f.path: f for f in files(store)}
    assert set(before) - set(after) == {holder.path}
    (added,) = [after[p] for p in set(after) - set(before)]
    assert (added.first, added.last, added.rows) == (holder.first, holder.last, holder.rows)
    assert store.read_days(T, DAY, day, day)["value"].to_list() == [1.0] * 30


def test_maintenance_of_a_laid_out_table_changes_nothing(store: DeltaStore) -> None:
    daily(store)
    store.maintain(T, retention_hours=0)
    laid_out = {f.path for f in files(store)}
    version = store.version(T)

    again = store.maintain(T, retention_hours=0)

    assert (again["files_added"], again["files_removed"]) == (0, 0)
    assert {f.path for f in files(store)} == laid_out
    new = [h for h in store.history(T) if int(h["version"]) > int(version or 0)]
    assert all(h.get(OPERATION_KEY) != MAINTENANCE for h in new)  # only the vacuum's commits


def test_a_daily_write_during_maintenance_wins_and_its_range_waits(
    store: DeltaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    daily(store)
    expected = by_key(pl.concat([rows([d]) for d in DAYS if d != DAYS[1]] + [rows([DAYS[1]], value=9.0)]))
    write_bins = relayout._write_bins
    raced: list[dt.date] = []

    def racing(*args: object, **kwargs: object) -> None:
        """The daily run replaces day 2 after maintenance read the first range's rows."""
        write_bins(*args, **kwargs)  # type: ignore[arg-type]
        if not raced:
            raced.append(DAYS[1])
            store.replace_days(T, rows([DAYS[1]], value=9.0), DAY, [DAYS[1]], {"step": "daily"})

    monkeypatch.setattr(relayout, "_write_bins", racing)
    stats = store.maintain(T, retention_hours=0)

    assert stats["skipped"] == f"{DAYS[0]}..{DAYS[2]}"
    assert by_key(store.read(T)).equals(expected)
    assert [f.days for f in files(store)][:3] == [1, 1, 1]  # left for the next run
    referenced = {Path(u).name for u in store.table(T).file_uris()}
    on_disk = {p.name for p in Path(store.uri(T)).glob("*.parquet")}
    assert on_disk == referenced  # no stray file of the skipped range

    monkeypatch.setattr(relayout, "_write_bins", write_bins)
    assert store.maintain(T, retention_hours=0)["skipped"] == "none"
    assert_laid_out(files(store))
    assert by_key(store.read(T)).equals(expected)


def test_versions_kept_for_registered_models_stay_readable(store: DeltaStore) -> None:
    daily(store)
    kept = int(store.version(T) or 0)
    trained_on = by_key(store.read(T, kept))
    replaced = store.replace_days(T, rows(DAYS[:5], value=2.0), DAY, DAYS[:5], {}).version

    store.maintain(T, retention_hours=0, keep_versions=[kept])

    assert store.unrecoverable_versions(T, [kept]) == {}
    assert by_key(store.read(T, kept)).equals(trained_on)
    assert replaced in store.unrecoverable_versions(T, [replaced])  # its range file was laid out and vacuumed


def test_a_version_already_lost_stops_maintenance_before_any_rewrite(store: DeltaStore) -> None:
    daily(store)
    lost = int(store.version(T) or 0)
    store.replace_days(T, rows(DAYS[:5], value=2.0), DAY, DAYS[:5], {})
    store.table(T).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    version = store.version(T)

    with pytest.raises(LineageError, match="already unrecoverable"):
        store.maintain(T, retention_hours=0, keep_versions=[lost])
    assert store.version(T) == version


def test_lineage_skips_maintenance_commits(store: DeltaStore) -> None:
    for d in DAYS[:6]:
        store.replace_days(T, rows([d]), DAY, [d], features_entry([d], {"bronze/flights": 7}))
    writers = {d: writer_of(lineage_commits(store, T, int(store.version(T) or 0)), d) for d in DAYS[:6]}

    store.maintain(T, retention_hours=0)

    commits = lineage_commits(store, T, int(store.version(T) or 0))
    assert {d: writer_of(commits, d) for d in DAYS[:6]} == writers
    maintenance = {h["version"] for h in store.history(T) if h.get(OPERATION_KEY) == MAINTENANCE}
    assert maintenance and not maintenance & {c.version for c in commits}


def test_a_table_made_before_day_ranges_gets_them(store: DeltaStore) -> None:
    """A table from before: statistics of every column and one compacted file of all its days."""
    write_deltalake(store.uri(T), rows(DAYS).to_arrow(), mode="overwrite", configuration=TABLE_CONFIGURATION)
    before = by_key(store.read(T))

    store.maintain(T, retention_hours=0)

    assert store.table(T).metadata().configuration[layout.STATS_COLUMNS] == DAY
    assert_laid_out(files(store))
    assert by_key(store.read(T)).equals(before)


def test_files_without_day_statistics_are_left_as_they_are(store: DeltaStore) -> None:
    configuration = {**TABLE_CONFIGURATION, "delta.dataSkippingNumIndexedCols": "0"}
    write_deltalake(store.uri(T), rows(DAYS).to_arrow(), mode="overwrite", configuration=configuration)
    paths = set(DeltaTable(store.uri(T)).file_uris())

    stats = store.maintain(T, retention_hours=0)

    assert "left as is" in str(stats["skipped"])
    assert set(store.table(T).file_uris()) == paths


def test_live_files_within_a_span_are_the_files_holding_a_day_of_it(store: DeltaStore) -> None:
    range_run(store)
    every = files(store)
    span = (DAYS[9], DAYS[12])
    within = layout.live_files(store.table(T), DAY, span)
    assert within is not None and within
    assert sorted(within, key=lambda f: f.first) == [
        f for f in every if f.first <= span[1] and f.last >= span[0]
    ]
    assert len(within) < len(every)
    actions = pl.DataFrame(
        {
            "path": ["a", "b"],
            "num_records": [30, 30],
            "size_bytes": [1, 1],
            f"min.{DAY}": [DAYS[10], None],  # b has no day statistics: its days are unknown
            f"max.{DAY}": [DAYS[10], None],
        }
    )
    assert layout.data_files(actions, DAY, (DAYS[40], DAYS[41])) is None  # however far a's days lie
