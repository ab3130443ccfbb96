"""Bad landing input through the real bronze assets: runs fail loudly, files are quarantined, tables stay put."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_shared.error import SerializableErrorInfo

from ml.landing_parse import count_data_rows
from ml.landing_zone import LandingZone
from ml.replay import replay
from orchestration.partitions import FIRST_DAY, LAST_DAY, daily_partitions
from resources import LandingResource
from tests.conftest import ASSETS, Platform, day

FLIGHTS = "bronze/flights"
REJECTS = "bronze/flights_rejects"


# --- helpers --------------------------------------------------------------------------------------


def error_text(error: SerializableErrorInfo | None) -> str:
    """The message of an error and of every error it was caused by."""
    parts: list[str] = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Failed step key -> the full error text of its failure."""
    return {
        event.step_key or "": error_text(event.step_failure_data.error)
        for event in result.all_events
        if event.is_step_failure
    }


def flights_failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    failed = failures(result)
    assert list(failed) == ["bronze__flights"], failed
    return failed["bronze__flights"]


def landing_file(platform: Platform, n: int, dataset: str = "flights") -> Path:
    return platform.landing_dir / dataset / f"{day(n).isoformat()}.csv"


def uri(path: Path) -> str:
    return str(path.resolve())


def sorted_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("flight_date", "carrier", "flight", "origin", "sched_dep_time")


def rewrite_csv(path: Path, change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    frame = pl.read_csv(path, infer_schema=False, null_values="NA")
    change(frame).write_csv(path, null_value="NA", line_terminator="\n")


# --- one bad file of a day ------------------------------------------------------------------------


def drop_dest(data: bytes) -> tuple[bytes, str]:
    frame = pl.read_csv(data, infer_schema=False, null_values="NA").drop("dest")
    return frame.write_csv(null_value="NA", line_terminator="\n").encode(), "missing required column(s): dest"


def dep_time_abc(data: bytes) -> tuple[bytes, str]:
    frame = pl.read_csv(data, infer_schema=False, null_values="NA")
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("abc"))
        .otherwise(pl.col("dep_time"))
        .alias("dep_time")
    )
    return (
        frame.write_csv(null_value="NA", line_terminator="\n").encode(),
        "column 'dep_time' line 5: 'abc' is not a valid Int32",
    )


def empty(data: bytes) -> tuple[bytes, str]:
    return b"", "file is empty (0 bytes)"


def truncated(data: bytes) -> tuple[bytes, str]:
    cut = data.index(b"\n", len(data) // 2) + 7
    line = data[:cut].count(b"\n") + 1
    return data[:cut], f"truncated: line {line} is incomplete"


def not_utf8(data: bytes) -> tuple[bytes, str]:
    offset = data.index(b"\n", data.index(b"\n") + 1) + 3  # inside line 3
    return data[:offset] + b"\xff\xfe" + data[offset + 2 :], f"byte 0xff at offset {offset} (line 3)"


CORRUPTIONS = {
    "missing-column": drop_dest,
    "wrong-type": dep_time_abc,
    "empty-file": empty,
    "truncated-file": truncated,
    "not-utf8": not_utf8,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_bad_day_file_fails_the_run_is_quarantined_and_leaves_the_table_alone(
    platform: Platform, corrupt: Callable[[bytes], tuple[bytes, str]]
) -> None:
    assert platform.bronze(day(1)).success
    version = platform.store.version(FLIGHTS)
    rejects_version = platform.store.version(REJECTS)
    rows = sorted_rows(platform.store.read(FLIGHTS))
    assert rows.height > 0

    path = landing_file(platform, 2)
    bad, cause = corrupt(path.read_bytes())
    path.write_bytes(bad)
    result = platform.bronze(day(2), raise_on_error=False)

    message = flights_failure(result)
    assert uri(path) in message
    assert cause in message
    assert "nothing was written" in message

    assert not path.exists()
    quarantined = platform.quarantine_dir / "flights" / path.name
    assert quarantined.read_bytes() == bad
    note = json.loads((platform.quarantine_dir / "flights" / f"{path.name}.reason.json").read_text())
    assert cause in note["reason"]
    assert note["source"] == uri(path)
    assert note["bytes"] == len(bad)
    assert note["md5"] == hashlib.md5(bad).hexdigest()
    assert str(quarantined.resolve()) in message

    assert platform.store.version(FLIGHTS) == version
    assert platform.store.version(REJECTS) == rejects_version
    assert sorted_rows(platform.store.read(FLIGHTS)).equals(rows)
    # weather of the same day had nothing wrong with it and was written
    assert platform.store.read_days("bronze/weather", "obs_date", day(2), day(2)).height > 0


def test_rerunning_a_quarantined_day_says_the_file_is_gone_and_why(platform: Platform) -> None:
    path = landing_file(platform, 2)
    bad, cause = dep_time_abc(path.read_bytes())
    path.write_bytes(bad)
    assert not platform.bronze(day(2), raise_on_error=False).success

    message = flights_failure(platform.bronze(day(2), raise_on_error=False))
    assert f"landing file {uri(path)} does not exist" in message
    assert f"(it was quarantined: {cause}" in message
    assert not platform.store.exists(FLIGHTS)
    # quarantine still holds the one delivery, untouched by the second run
    assert (platform.quarantine_dir / "flights" / path.name).read_bytes() == bad
    assert sorted(p.name for p in (platform.quarantine_dir / "flights").iterdir()) == [
        path.name,
        f"{path.name}.reason.json",
    ]


def test_a_second_bad_delivery_of_a_day_keeps_the_first_in_quarantine(platform: Platform) -> None:
    path = landing_file(platform, 2)
    good = path.read_bytes()
    first, _ = empty(good)
    second, _ = not_utf8(good)
    path.write_bytes(first)
    assert not platform.bronze(day(2), raise_on_error=False).success
    path.write_bytes(second)
    message = flights_failure(platform.bronze(day(2), raise_on_error=False))

    folder = platform.quarantine_dir / "flights"
    kept = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".reason.json")}
    assert sorted(kept.values()) == sorted([first, second])
    assert kept[path.name] == first
    (renamed,) = [name for name in kept if name != path.name]
    assert renamed == f"{day(2).isoformat()}.{hashlib.md5(second).hexdigest()[:12]}.csv"
    assert str((folder / renamed).resolve()) in message
    assert "not valid UTF-8" in json.loads((folder / f"{renamed}.reason.json").read_text())["reason"]


@pytest.mark.parametrize("bad_days", [[4], [3, 5]], ids=["one-bad-day", "two-bad-days"])
def test_a_range_with_a_bad_day_writes_nothing_and_lists_every_bad_file(
    platform: Platform, bad_days: list[int]
) -> None:
    assert platform.bronze(day(1)).success
    version = platform.store.version(FLIGHTS)
    rows = sorted_rows(platform.store.read(FLIGHTS))
    for n in bad_days:
        path = landing_file(platform, n)
        path.write_bytes(dep_time_abc(path.read_bytes())[0])

    result = platform.bronze(day(2), day(6), raise_on_error=False)

    message = flights_failure(result)
    assert f"{len(bad_days)} of 5 flights landing file(s) could not be ingested" in message
    for n in range(2, 7):
        path = landing_file(platform, n)
        if n in bad_days:
            assert uri(path) in message
            assert not path.exists()
            assert (platform.quarantine_dir / "flights" / path.name).exists()
        else:
            assert uri(path) not in message
            assert path.exists()
    assert platform.store.version(FLIGHTS) == version
    assert sorted_rows(platform.store.read(FLIGHTS)).equals(rows)
    assert platform.store.read(FLIGHTS)["flight_date"].unique().to_list() == [day(1)]


def test_a_landing_folder_that_does_not_exist_fails_the_run_and_names_it(
    platform: Platform, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-landing"
    result = dg.materialize(
        ASSETS,
        selection=[FLIGHTS],
        partition_key=day(1).isoformat(),
        resources={
            **platform.resources,
            "landing": LandingResource(
                root=str(missing), quarantine_root=str(tmp_path / "no-such-quarantine")
            ),
        },
        raise_on_error=False,
    )
    message = flights_failure(result)
    assert f"landing zone {missing.resolve()} does not exist" in message
    assert not missing.exists()
    assert not (tmp_path / "no-such-quarantine").exists()
    assert not platform.store.exists(FLIGHTS)


def test_a_landing_folder_removed_after_setup_fails_the_run_and_names_it(platform: Platform) -> None:
    shutil.rmtree(platform.landing_dir)
    message = flights_failure(platform.materialize([FLIGHTS], day(1), raise_on_error=False))
    assert f"landing zone {platform.landing_dir.resolve()} does not exist" in message


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

    inventory = platform.zone.scan("flights", FIRST_DAY, LAST_DAY)

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
    inventory = platform.zone.scan("flights", FIRST_DAY, LAST_DAY)
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
    (moved,) = platform.zone.scan("flights", FIRST_DAY, LAST_DAY).quarantined
    assert moved.reason == reason
    assert not stray.exists()
    assert Path(moved.destination).read_bytes() == b"x\n"


# --- days outside the partitions ------------------------------------------------------------------


def test_scan_quarantines_a_day_outside_the_partition_range(platform: Platform) -> None:
    stray = platform.landing_dir / "flights" / "2014-01-03.csv"
    data = landing_file(platform, 3).read_bytes().replace(b"2013,1,3,", b"2014,1,3,")
    stray.write_bytes(data)

    inventory = platform.zone.scan("flights", FIRST_DAY, LAST_DAY)

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
        zone.scan("flights", FIRST_DAY, LAST_DAY)


# --- row-level rejects ----------------------------------------------------------------------------


def test_rows_that_cannot_be_true_go_to_rejects_and_the_checks_still_reconcile(platform: Platform) -> None:
    path = landing_file(platform, 3)
    original = pl.read_csv(path, infer_schema=False, null_values="NA")
    n = original.height

    def spoil(frame: pl.DataFrame) -> pl.DataFrame:
        row = pl.int_range(pl.len())
        frame = frame.with_columns(
            pl.when(row == 0).then(pl.lit("-50")).otherwise(pl.col("distance")).alias("distance"),
            pl.when(row == 1).then(pl.lit("ZZZ")).otherwise(pl.col("dest")).alias("dest"),
            pl.when(row == 2)
            .then(pl.lit("1275"))
            .otherwise(pl.col("sched_dep_time"))
            .alias("sched_dep_time"),
        )
        return pl.concat([frame, frame.slice(3, 1)])

    rewrite_csv(path, spoil)
    result = platform.bronze(day(3))
    assert result.success

    rejects = platform.store.read(REJECTS).sort("line")
    assert rejects["line"].to_list() == [2, 3, 4, n + 2]
    assert rejects["day"].unique().to_list() == [day(3)]
    assert rejects["source_file"].unique().to_list() == [uri(path)]
    reasons = rejects["reason"].to_list()
    assert reasons[0] == "non-positive distance"
    assert reasons[1] == "unknown destination airport"
    assert reasons[2].startswith("impossible sched_dep_time")
    assert reasons[3] == "duplicate key flight_date/carrier/flight/origin/sched_dep_time"
    records = [json.loads(r) for r in rejects["record"]]
    assert records[0]["distance"] == -50
    assert records[1]["dest"] == "ZZZ"
    assert records[2]["sched_dep_time"] == 1275
    duplicated = original.row(3, named=True)
    assert records[3]["flight"] == int(duplicated["flight"])
    assert records[3]["carrier"] == duplicated["carrier"]

    flights = platform.store.read(FLIGHTS)
    assert flights.height == n + 1 - 4
    assert flights.filter(pl.col("distance") <= 0).height == 0
    assert flights.filter(pl.col("dest") == "ZZZ").height == 0
    assert flights.filter(pl.col("sched_dep_time") == 1275).height == 0
    same_flight = flights.filter(
        (pl.col("carrier") == duplicated["carrier"])
        & (pl.col("flight") == int(duplicated["flight"]))
        & (pl.col("origin") == duplicated["origin"])
        & (pl.col("sched_dep_time") == int(duplicated["sched_dep_time"]))
    )
    assert same_flight.height == 1
    for spoiled in original.slice(0, 3).iter_rows(named=True):
        same_key = flights.filter(
            (pl.col("carrier") == spoiled["carrier"])
            & (pl.col("flight") == int(spoiled["flight"]))
            & (pl.col("origin") == spoiled["origin"])
            & (pl.col("sched_dep_time") == int(spoiled["sched_dep_time"]))
        )
        assert same_key.height == 0, spoiled

    (materialization,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey(["bronze", "flights"])
    ]
    metadata = materialization.metadata
    assert metadata["rejected"].value == 4
    assert metadata["landing_rows"].value == n + 1
    reject_reasons = metadata["reject_reasons"].value
    assert isinstance(reject_reasons, dict)
    assert sum(reject_reasons.values()) == 4
    assert reject_reasons["non-positive distance"] == 1

    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    assert evaluations == {
        (table, check): True
        for table in (FLIGHTS, "bronze/weather")
        for check in ("schema", "key_unique", "reconciles_with_landing")
    }
    (reconcile,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "reconciles_with_landing" and e.asset_key.to_user_string() == FLIGHTS
    ]
    assert reconcile.metadata["table_rows"].value == n - 3
    assert reconcile.metadata["landing_minus_rejects"].value == n - 3
