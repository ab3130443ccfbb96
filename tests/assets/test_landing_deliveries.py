"""Landing deliveries: the same day delivered twice, names that are no day, days outside the partitions.

Nothing is lost: a second or misnamed delivery is quarantined with its reason, and
re-ingesting a day replaces it without duplicating rows.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.partitions import FIRST_DAY, daily_partitions
from ml.ingest.landing_zone import LandingZone
from ml.ingest.parse import count_data_rows
from ml.ingest.replay import replay
from ml.partition_span import DEMO_LAST_DAY as LAST_DAY
from tests.conftest import ASSETS, Platform, day, failures, landing_file, uri

FLIGHTS = "bronze/flights"
REJECTS = "bronze/flights_rejects"
NOW = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)


# --- duplicate deliveries -------------------------------------------------------------------------


def rows_per_day(platform: Platform, table: str, column: str) -> dict[dt.date, int]:
    frame = platform.store.read(table).group_by(column).len()
    return dict(frame.iter_rows())


def landing_rows_per_day(platform: Platform, dataset: str, days: range) -> dict[dt.date, int]:
    counts = {}
    for n in days:
        path = landing_file(platform, n, dataset)
        counts[day(n)] = pl.read_csv(path, infer_schema=False).height
        assert counts[day(n)] == count_data_rows(path.read_bytes()) > 0
    return counts


def test_materializing_a_day_twice_and_backfilling_over_it_never_duplicates_rows(platform: Platform) -> None:
    assert platform.bronze(day(2)).success
    first_version = platform.store.version(FLIGHTS)
    assert platform.bronze(day(2)).success
    assert platform.store.version(FLIGHTS) == (first_version or 0) + 1
    assert rows_per_day(platform, FLIGHTS, "flight_date") == landing_rows_per_day(
        platform, "flights", range(2, 3)
    )

    assert platform.bronze(day(3)).success
    assert platform.bronze(day(1), day(4)).success
    assert platform.bronze(day(2), day(3)).success

    expected_flights = landing_rows_per_day(platform, "flights", range(1, 5))
    expected_weather = landing_rows_per_day(platform, "weather", range(1, 5))
    assert rows_per_day(platform, FLIGHTS, "flight_date") == expected_flights
    assert rows_per_day(platform, "bronze/weather", "obs_date") == expected_weather
    key = ["flight_date", "carrier", "flight", "origin", "sched_dep_time"]
    assert not platform.store.read(FLIGHTS).select(key).is_duplicated().any()
    assert platform.store.read(REJECTS).height == 0


@pytest.mark.parametrize("name", ["2013-01-05 (1).csv", "2013-01-05_v2.csv", "2013-01-05.csv.bak"])
def test_scan_quarantines_a_second_delivery_of_a_day_and_keeps_the_canonical_file(
    platform: Platform, name: str
) -> None:
    canonical = landing_file(platform, 5)
    copy = canonical.with_name(name)
    data = canonical.read_bytes() + b"2013,1,5,NA,NA,NA,NA,NA,NA,UA,1,NA,EWR,IAH,NA,1400,5,0,NA\n"
    copy.write_bytes(data)

    inventory = platform.zone.scan("flights", FIRST_DAY, LAST_DAY, now=NOW)

    (moved,) = inventory.quarantined
    assert moved.source == uri(copy)
    assert "duplicate delivery of 2013-01-05" in moved.reason
    assert "2013-01-05.csv" in moved.reason
    assert not copy.exists()
    assert Path(moved.destination).read_bytes() == data
    assert Path(moved.destination).parent == (platform.quarantine_dir / "flights").resolve()
    note = json.loads(Path(f"{moved.destination}.reason.json").read_text())
    assert note["reason"] == moved.reason

    assert canonical.exists()
    assert inventory.days[day(5)] == uri(canonical)
    assert sorted(inventory.days) == [day(n) for n in range(1, 47)]


def test_scan_leaves_hidden_files_alone(platform: Platform) -> None:
    hidden = platform.landing_dir / "flights" / ".2013-01-05.csv.tmp"
    hidden.write_bytes(b"half a file")
    inventory = platform.zone.scan("flights", FIRST_DAY, LAST_DAY, now=NOW)
    assert inventory.quarantined == []
    assert hidden.read_bytes() == b"half a file"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("notes.txt", "file name is not YYYY-MM-DD.csv"),
        ("2013-02-30.csv", "file name 2013-02-30.csv is not a calendar date"),
    ],
)
def test_scan_quarantines_names_that_are_no_day(platform: Platform, name: str, reason: str) -> None:
    stray = platform.landing_dir / "flights" / name
    stray.write_bytes(b"x\n")
    (moved,) = platform.zone.scan("flights", FIRST_DAY, LAST_DAY, now=NOW).quarantined
    assert moved.reason == reason
    assert not stray.exists()
    assert Path(moved.destination).read_bytes() == b"x\n"


# --- days outside the partitions ------------------------------------------------------------------


def test_scan_quarantines_a_day_outside_the_partition_range(platform: Platform) -> None:
    stray = platform.landing_dir / "flights" / "2014-01-03.csv"
    data = landing_file(platform, 3).read_bytes().replace(b"2013,1,3,", b"2014,1,3,")
    stray.write_bytes(data)

    inventory = platform.zone.scan("flights", FIRST_DAY, LAST_DAY, now=NOW)

    (moved,) = inventory.quarantined
    assert moved.reason == "day 2014-01-03 is outside the partition range 2013-01-01..2013-12-31"
    assert not stray.exists()
    assert Path(moved.destination).read_bytes() == data
    assert dt.date(2014, 1, 3) not in inventory.days
    assert len(inventory.days) == 46


def test_dagster_has_no_partition_outside_2013(platform: Platform) -> None:
    assert daily_partitions.has_partition_key("2013-01-01")
    assert daily_partitions.has_partition_key("2013-12-31")
    assert not daily_partitions.has_partition_key("2012-12-31")
    assert not daily_partitions.has_partition_key("2014-01-03")
    assert daily_partitions.get_first_partition_key() == FIRST_DAY.isoformat()
    assert daily_partitions.get_last_partition_key() == LAST_DAY.isoformat()

    with pytest.raises(dg.DagsterUnknownPartitionError, match="2014-01-03"):
        dg.materialize(ASSETS, selection=[FLIGHTS], resources=platform.resources, partition_key="2014-01-03")
    assert not platform.store.exists(FLIGHTS)


def test_the_last_partition_of_2013_can_be_ingested(platform: Platform) -> None:
    last = LAST_DAY
    replay(platform.landing_dir, last, last)
    assert (platform.landing_dir / "flights" / f"{last.isoformat()}.csv").exists()

    result = platform.bronze(last, raise_on_error=False)

    assert failures(result) == {}
    assert result.success
    assert platform.store.read(FLIGHTS)["flight_date"].unique().to_list() == [last]
    # The source has no weather for 2013-12-31: replay delivers a header-only file and
    # the day is ingested with no rows, so a whole-year backfill is not blocked by it.
    weather_file = platform.landing_dir / "weather" / f"{last.isoformat()}.csv"
    assert weather_file.read_text().count("\n") == 1
    assert platform.store.read_days("bronze/weather", "obs_date", last, last).height == 0
    weather = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "bronze/weather"
    )
    assert weather.materialization.metadata["empty_days"].value == [last.isoformat()]


def test_scan_of_a_missing_landing_folder_names_it(tmp_path: Path) -> None:
    zone = LandingZone(str(tmp_path / "absent"), str(tmp_path / "quarantine"))
    with pytest.raises(FileNotFoundError, match=r"landing zone .*absent does not exist"):
        zone.scan("flights", FIRST_DAY, LAST_DAY, now=NOW)
