"""Bronze tables: correct time zones, metadata that answers which run wrote what, passing checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import dagster as dg
import polars as pl

from ml.ingest.parse import count_data_rows
from ml.ingest.replay import replay
from ml.lake.schemas import BRONZE_FLIGHTS_SCHEMA, BRONZE_WEATHER_SCHEMA
from tests.conftest import ASSETS, Platform, day

NEW_YORK = "America/New_York"


def test_timestamps_are_utc_and_match_local_new_york_schedule(tmp_path: Path) -> None:
    summer, fall_back = dt.date(2013, 7, 1), dt.date(2013, 11, 3)
    replay(tmp_path / "landing", dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    for d in (summer, fall_back):
        replay(tmp_path / "landing", d, d)
    platform = Platform(tmp_path)
    platform.reference()
    for d in (dt.date(2013, 1, 1), summer, fall_back):
        assert platform.bronze(d).success

    flights = platform.store.read("bronze/flights")
    assert flights.schema["sched_dep_utc"] == pl.Datetime("us", "UTC")
    first = flights.filter(
        (pl.col("flight_date") == dt.date(2013, 1, 1))
        & (pl.col("carrier") == "UA")
        & (pl.col("flight") == 1545)
    )
    # 05:15 Eastern Standard Time is 10:15 UTC.
    assert first["sched_dep_utc"][0] == dt.datetime(2013, 1, 1, 10, 15, tzinfo=dt.UTC)
    july = flights.filter(pl.col("flight_date") == summer)
    # In summer New York is UTC-4: local hour + 4 = UTC hour.
    local = july["sched_dep_utc"].dt.convert_time_zone(NEW_YORK)
    assert (local.dt.hour() == july["hour"]).all() and (local.dt.minute() == july["minute"]).all()
    assert (july["sched_dep_utc"].dt.hour() == (july["hour"] + 4) % 24).all()

    weather = platform.store.read("bronze/weather").filter(pl.col("obs_date") == fall_back)
    assert weather.schema["time_hour"] == pl.Datetime("us", "UTC")
    one_am = weather.filter((pl.col("origin") == "JFK") & (pl.col("hour") == 1))["time_hour"].sort().to_list()
    # 01:00 happens twice on the day clocks fall back: 05:00 UTC (EDT) and 06:00 UTC (EST).
    assert one_am == [dt.datetime(2013, 11, 3, 5, tzinfo=dt.UTC), dt.datetime(2013, 11, 3, 6, tzinfo=dt.UTC)]


def test_materialization_reports_version_rows_rejects_preview_and_passes_checks(platform: Platform) -> None:
    result = platform.bronze(day(1), day(2))
    events = result.get_asset_materialization_events()
    flights = next(e for e in events if e.asset_key.to_user_string() == "bronze/flights")
    metadata = flights.materialization.metadata
    table = platform.store.read("bronze/flights")
    assert metadata["dagster/row_count"].value == table.height
    assert metadata["delta_version"].value == platform.store.version("bronze/flights")
    assert metadata["rejected"].value == 0
    assert "preview" not in metadata and "dagster/column_schema" not in metadata  # on the definition
    assert metadata["days"].value == f"{day(1)}..{day(2)}"
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {"schema", "key_unique", "reconciles_with_landing"}
    assert all(c.passed for c in checks)

    entry = next(
        h for h in platform.store.history("bronze/flights") if h["version"] == metadata["delta_version"].value
    )
    assert entry["dagster_run_id"] == result.run_id
    assert entry["dagster_partition"] == f"{day(1)}..{day(2)}"


def test_a_one_day_run_shows_its_rows_and_the_definition_its_columns(platform: Platform) -> None:
    result = platform.bronze(day(3))
    events = result.get_asset_materialization_events()
    metadata = next(
        e for e in events if e.asset_key.to_user_string() == "bronze/flights"
    ).materialization.metadata
    assert "| flight_date |" in metadata["preview"].value
    assert [c.name for c in metadata["dagster/column_schema"].value.columns] == list(BRONZE_FLIGHTS_SCHEMA)
    spec = next(
        a for a in ASSETS if isinstance(a, dg.AssetsDefinition) and a.key.to_user_string() == "bronze/flights"
    )
    definition = spec.specs_by_key[spec.key].metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in definition.columns] == [
        (n, str(t)) for n, t in BRONZE_FLIGHTS_SCHEMA.items()
    ]


def test_stored_schemas_are_the_contracts(platform: Platform) -> None:
    platform.bronze(day(3))
    assert dict(platform.store.read("bronze/flights").schema) == BRONZE_FLIGHTS_SCHEMA
    assert dict(platform.store.read("bronze/weather").schema) == BRONZE_WEATHER_SCHEMA


def test_a_range_run_is_one_commit_and_a_backfill_over_it_replaces_days(platform: Platform) -> None:
    platform.bronze(day(1), day(5))
    version = platform.store.version("bronze/flights")
    platform.bronze(day(3), day(8))
    assert platform.store.version("bronze/flights") == version + 1
    counts = dict(platform.store.read("bronze/flights").group_by("flight_date").len().iter_rows())
    for n in range(1, 9):
        landing = pl.read_csv(platform.landing_dir / "flights" / f"{day(n)}.csv", infer_schema=False)
        assert counts[day(n)] == landing.height


def test_features_read_a_bounded_trailing_window(platform: Platform, tmp_path: Path) -> None:
    platform.bronze(day(1), day(40))
    result = platform.features(day(40))
    assert result.success
    frame = platform.store.read("features/flight_features")
    assert frame["flight_date"].unique().to_list() == [day(40)]
    # Remove bronze days outside the 28-day window: day 40's features must not change.
    shutil.rmtree(platform.root / "lake" / "features")
    platform.store.replace_days(
        "bronze/flights",
        pl.DataFrame(schema=BRONZE_FLIGHTS_SCHEMA),
        "flight_date",
        [day(n) for n in range(1, 12)],
        {},
    )
    platform.features(day(40))
    assert platform.store.read("features/flight_features").equals(frame)


def test_the_landing_log_holds_each_days_file_md5_and_counts_once(platform: Platform) -> None:
    assert platform.bronze(day(1), day(3)).success
    assert platform.bronze(day(2)).success

    log = platform.store.read("bronze/flights_landing_log").sort("day")
    assert log["day"].to_list() == [day(1), day(2), day(3)]
    rejects = dict(platform.store.read("bronze/flights_rejects").group_by("day").len().iter_rows())
    for row in log.iter_rows(named=True):
        data = Path(row["source_file"]).read_bytes()
        assert row["md5"] == hashlib.md5(data).hexdigest()
        assert row["landing_rows"] == count_data_rows(data) > 0
        assert row["rejected"] == rejects.get(row["day"], 0)
    flights = platform.store.read("bronze/flights").group_by("flight_date").len()
    assert dict(flights.iter_rows()) == {
        r["day"]: r["landing_rows"] - r["rejected"] for r in log.iter_rows(named=True)
    }
