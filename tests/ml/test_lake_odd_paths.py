"""A lake whose root has a space, a comma or a percent sign in it: written, read back, maintained.

delta-rs lists a local table's data files percent-encoded (`DeltaTable.file_uris()`: a space
becomes %20) and polars' native Delta scan opens those strings as plain paths
(pola-rs/polars#20944), so such a lake was written but could not be read, and every
registered version of it looked unrecoverable to maintenance.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.lake.delta import DeltaStore
from ml.lake.tables import BRONZE_FLIGHTS

DAYS = [dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)]
ROOTS = ["plain", "my lake, copy", "100% #1"]
"""A control, the reported root, and two more characters that percent-encoding changes."""


def flights(days: list[dt.date], value: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"flight_date": [d for d in days for _ in range(3)], "dep_delay": [value] * (3 * len(days))},
        schema={"flight_date": pl.Date, "dep_delay": pl.Int64},
    )


def written(tmp_path: Path, folder: str) -> DeltaStore:
    """Version 1 holds three days of delay 1; version 2 replaced the middle day with delay 2."""
    store = DeltaStore(str(tmp_path / folder / "lake"))
    assert store.replace_days(BRONZE_FLIGHTS, flights(DAYS, 1), "flight_date", DAYS, {}).version == 1
    middle = DAYS[1:2]
    assert store.replace_days(BRONZE_FLIGHTS, flights(middle, 2), "flight_date", middle, {}).version == 2
    return store


def delays(frame: pl.DataFrame) -> list[tuple[dt.date, int]]:
    return frame.group_by("flight_date").agg(pl.col("dep_delay").sum()).sort("flight_date").rows()


@pytest.mark.parametrize("folder", ROOTS)
def test_a_table_under_the_root_reads_back_what_was_written(tmp_path: Path, folder: str) -> None:
    store = written(tmp_path, folder)
    assert " " not in folder or " " in store.uri(BRONZE_FLIGHTS)  # the path as given, not encoded

    assert delays(store.read(BRONZE_FLIGHTS)) == [(DAYS[0], 3), (DAYS[1], 6), (DAYS[2], 3)]
    assert delays(store.read(BRONZE_FLIGHTS, version=1)) == [(d, 3) for d in DAYS]
    assert delays(store.read_days(BRONZE_FLIGHTS, "flight_date", DAYS[1], DAYS[2])) == [
        (DAYS[1], 6),
        (DAYS[2], 3),
    ]
    assert store.last_day(BRONZE_FLIGHTS, "flight_date") == DAYS[2]
    assert store.tables() == [BRONZE_FLIGHTS]


@pytest.mark.parametrize("folder", ROOTS)
def test_its_versions_are_recoverable_and_maintenance_merges_its_files(tmp_path: Path, folder: str) -> None:
    store = DeltaStore(str(tmp_path / folder / "lake"))
    for day in DAYS:  # a file per day: neighbours that maintenance merges into one day range
        store.replace_days(BRONZE_FLIGHTS, flights([day], 1), "flight_date", [day], {})
    assert store.unrecoverable_versions(BRONZE_FLIGHTS, [1, 2, 3]) == {}

    report = store.maintain(BRONZE_FLIGHTS, retention_hours=0, keep_versions=[2])
    assert (report["files_before"], report["files_removed"], report["files_after"]) == (3, 3, 1)
    assert store.unrecoverable_versions(BRONZE_FLIGHTS, [2]) == {}
    assert delays(store.read(BRONZE_FLIGHTS, version=2)) == [(DAYS[0], 3), (DAYS[1], 3)]
    assert delays(store.read(BRONZE_FLIGHTS)) == [(d, 3) for d in DAYS]
