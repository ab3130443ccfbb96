"""The replay tool: one landing file per dataset and day, idempotent, never silently overwriting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.ingest.parse import count_data_rows, parse_landing_csv
from ml.ingest.replay import EXIT_CONFLICT, main, replay
from ml.ingest.source_data import read_source
from ml.ingest.validation import validate_flights, validate_weather, with_file_day
from ml.lake.schemas import (
    AIRLINES_LANDING,
    AIRPORTS_LANDING,
    FLIGHTS_LANDING,
    PLANES_LANDING,
    WEATHER_LANDING,
)
from tests.ml.replay_support import FIRST, LAST, REFERENCE, args, day_files, snapshot, source_rows


def test_replay_writes_one_file_per_day_and_the_reference_files(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    outcomes = replay(landing, FIRST, LAST)

    assert [o.status for o in outcomes] == ["written"] * 9
    assert sorted(p.name for p in (landing / "reference").iterdir()) == REFERENCE
    expected_days = [f"2013-01-0{n}.csv" for n in (1, 2, 3)]
    assert day_files(landing, "flights") == expected_days
    assert day_files(landing, "weather") == expected_days
    assert not list(landing.rglob(".*"))  # no temporary files left behind

    for dataset, contract in (("flights", FLIGHTS_LANDING), ("weather", WEATHER_LANDING)):
        for n in (1, 2, 3):
            data = (landing / dataset / f"2013-01-0{n}.csv").read_bytes()
            frame = parse_landing_csv(data, contract, dataset)
            assert frame.columns[:-1] == contract.names
            assert frame.select("year", "month", "day").unique().rows() == [(2013, 1, n)]
            assert frame.height == count_data_rows(data) == source_rows(dataset, dt.date(2013, 1, n))
    for name, contract in (
        ("planes", PLANES_LANDING),
        ("airports", AIRPORTS_LANDING),
        ("airlines", AIRLINES_LANDING),
    ):
        data = (landing / "reference" / f"{name}.csv").read_bytes()
        assert parse_landing_csv(data, contract, name).height == read_source(name).height


def test_a_second_run_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    landing = tmp_path / "landing"
    assert main(args(landing)) == 0
    assert "9 written, 0 unchanged, 0 replaced, 0 conflict" in capsys.readouterr().out
    before = snapshot(landing)

    assert main(args(landing)) == 0
    out = capsys.readouterr()
    assert "0 written, 9 unchanged, 0 replaced, 0 conflict" in out.out
    assert out.err == ""
    assert snapshot(landing) == before
    assert all(o.status == "unchanged" for o in replay(landing, FIRST, LAST))
    assert snapshot(landing) == before


def test_a_file_edited_by_hand_is_kept_without_force_and_replaced_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    assert main(args(landing)) == 0
    edited = landing / "flights" / "2013-01-02.csv"
    replayed = edited.read_bytes()
    by_hand = replayed.replace(b",UA,", b",AA,", 1)
    assert by_hand != replayed
    edited.write_bytes(by_hand)
    others = {p: v for p, v in snapshot(landing).items() if p != edited}
    capsys.readouterr()

    assert main(args(landing)) == EXIT_CONFLICT == 3
    out = capsys.readouterr()
    assert f"kept existing file whose content differs (use --force to replace): {edited}" in out.err
    assert "8 unchanged, 0 replaced, 1 conflict" in out.out
    assert edited.read_bytes() == by_hand
    assert {p: v for p, v in snapshot(landing).items() if p != edited} == others

    assert main([*args(landing), "--force"]) == 0
    out = capsys.readouterr()
    assert f"replaced (content differed): {edited}" in out.out
    assert "0 written, 8 unchanged, 1 replaced, 0 conflict" in out.out
    assert edited.read_bytes() == replayed
    assert {p: v for p, v in snapshot(landing).items() if p != edited} == others


def test_force_does_not_touch_files_that_are_already_right(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    replay(landing, FIRST, LAST)
    before = snapshot(landing)
    assert {o.status for o in replay(landing, FIRST, LAST, force=True)} == {"unchanged"}
    assert snapshot(landing) == before


def test_the_last_day_of_2013_is_written_and_its_flights_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    assert main(["--landing", str(landing), "--start", "2013-12-31", "--datasets", "flights"]) == 0
    assert "4 written" in capsys.readouterr().out
    assert day_files(landing, "flights") == ["2013-12-31.csv"]
    assert not (landing / "weather").exists()

    last = dt.date(2013, 12, 31)
    path = landing / "flights" / "2013-12-31.csv"
    typed = parse_landing_csv(path.read_bytes(), FLIGHTS_LANDING, str(path))
    assert typed.height == source_rows("flights", last) > 0
    airports = pl.read_csv(landing / "reference" / "airports.csv", infer_schema=False)["faa"].to_list()
    carriers = pl.read_csv(landing / "reference" / "airlines.csv", infer_schema=False)["carrier"].to_list()
    validated = validate_flights(with_file_day(typed, last, str(path)), airports, carriers)
    assert validated.rejects.height == 0
    assert validated.valid.height == typed.height
    # the evening's departures are already 2014 in UTC, and still belong to the day
    assert validated.valid["time_hour"].max().year == 2014  # type: ignore[union-attr]
    assert validated.valid["flight_date"].unique().to_list() == [last]


def test_the_last_weather_day_of_the_source_is_written_and_validates(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    day = dt.date(2013, 12, 30)
    outcomes = replay(landing, day, day, datasets=("weather",))
    assert [o.status for o in outcomes] == ["written"] * 4
    path = landing / "weather" / "2013-12-30.csv"
    typed = parse_landing_csv(path.read_bytes(), WEATHER_LANDING, str(path))
    airports = pl.read_csv(landing / "reference" / "airports.csv", infer_schema=False)["faa"].to_list()
    validated = validate_weather(with_file_day(typed, day, str(path)), airports)
    assert validated.rejects.height == 0
    assert validated.valid.height == source_rows("weather", day) > 0
