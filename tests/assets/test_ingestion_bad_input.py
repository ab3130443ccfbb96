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

from resources import LandingResource
from tests.conftest import ASSETS, Platform, day, failures, landing_file, uri

FLIGHTS = "bronze/flights"
REJECTS = "bronze/flights_rejects"


# --- helpers --------------------------------------------------------------------------------------


def flights_failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    failed = failures(result)
    assert list(failed) == ["bronze__flights"], failed
    return failed["bronze__flights"]


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
def test_a_range_with_a_bad_day_writes_its_good_days_and_fails_only_the_bad_ones(
    platform: Platform, bad_days: list[int]
) -> None:
    assert platform.bronze(day(1)).success
    for n in bad_days:
        path = landing_file(platform, n)
        path.write_bytes(dep_time_abc(path.read_bytes())[0])

    instance = dg.DagsterInstance.ephemeral()
    result = platform.bronze(day(2), day(6), raise_on_error=False, instance=instance)

    message = flights_failure(result)
    good = [day(n) for n in range(2, 7) if n not in bad_days]
    assert f"{len(bad_days)} of 5 flights landing file(s) could not be ingested" in message
    assert f"the other {len(good)} day(s) were written" in message
    for n in range(2, 7):
        path = landing_file(platform, n)
        if n in bad_days:
            assert uri(path) in message
            assert not path.exists()
            assert (platform.quarantine_dir / "flights" / path.name).exists()
        else:
            assert uri(path) not in message
            assert path.exists()
    stored = platform.store.read(FLIGHTS)
    assert sorted(stored["flight_date"].unique().to_list()) == [day(1), *good]
    landing_log = platform.store.read("bronze/flights_landing_log")
    assert sorted(landing_log["day"].to_list()) == [day(1), *good]
    # Dagster sees the good days materialized by the failed run, and only the bad ones failed.
    asset = dg.AssetKey(["bronze", "flights"])
    materialized = {dt.date.fromisoformat(k) for k in instance.get_materialized_partitions(asset)}
    assert materialized == set(good)
    events = [r.dagster_event for r in instance.all_logs(result.run_id) if r.dagster_event]
    checks = [
        e.event_specific_data
        for e in events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.asset_key == asset
    ]
    assert {c.check_name for c in checks} == {"schema", "key_unique", "reconciles_with_landing"}
    assert all(c.passed for c in checks)


def test_a_bad_file_is_asked_for_again_when_it_is_redelivered(platform: Platform) -> None:
    path = landing_file(platform, 3)
    good = path.read_bytes()
    path.write_bytes(dep_time_abc(good)[0])
    assert not platform.bronze(day(2), day(4), raise_on_error=False).success
    assert sorted(platform.store.read(FLIGHTS)["flight_date"].unique().to_list()) == [day(2), day(4)]

    path.write_bytes(good)
    assert platform.bronze(day(3)).success
    assert sorted(platform.store.read(FLIGHTS)["flight_date"].unique().to_list()) == [day(2), day(3), day(4)]
    # the bad delivery stays in quarantine with its reason
    assert (platform.quarantine_dir / "flights" / path.name).exists()


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
