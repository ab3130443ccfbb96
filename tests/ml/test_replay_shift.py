"""Shifted replays: whole weeks moved, local hours kept across clock changes, years repeated."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.ingest.batch import ingest_days, read_reference
from ml.ingest.landing_zone import LandingZone
from ml.ingest.parse import parse_landing_csv
from ml.ingest.replay import main, replay
from ml.ingest.source_data import read_source
from ml.ingest.synthetic import source_day
from ml.ingest.validation import validate_weather
from ml.lake.schemas import AIRPORTS_LANDING, PLANES_LANDING, WEATHER_LANDING
from ml.settings import NEW_YORK
from tests.ml.replay_support import (
    DAILY,
    FIRST,
    NOW,
    SHIFT_2026,
    args,
    day_files,
    ingested,
    source_day_rows,
    source_rows,
    span,
    typed_day,
    utc,
)


def test_a_shift_of_whole_52_weeks_keeps_weekdays_and_names_files_by_the_shifted_day(
    tmp_path: Path,
) -> None:
    landing, shift = tmp_path / "landing", 364 * 13
    first = FIRST + dt.timedelta(days=shift)
    last = first + dt.timedelta(days=2)
    assert main(args(landing, first, last, "--shift-days", str(shift))) == 0

    expected = [f"{d.isoformat()}.csv" for d in span(first, last)]
    assert day_files(landing, "flights") == day_files(landing, "weather") == expected
    for day in span(first, last):
        source = day - dt.timedelta(days=shift)
        assert day.weekday() == source.weekday()
        for dataset in DAILY:
            frame = typed_day(landing, dataset, day)
            assert frame.select("year", "month", "day").unique().rows() == [(day.year, day.month, day.day)]
            assert frame["hour"].to_list() == source_day_rows(dataset, source)["hour"].cast(int).to_list()
    flights, weather = ingested(landing, first, last)
    assert flights.rejects.height == weather.rejects.height == 0
    assert flights.valid["flight_date"].unique().sort().to_list() == span(first, last)
    assert flights.valid.height == sum(
        source_rows("flights", d - dt.timedelta(days=shift)) for d in span(first, last)
    )


@pytest.mark.parametrize(
    ("source", "utc_moves_by"),
    [
        (dt.date(2013, 3, 5), dt.timedelta(hours=-1)),  # EST in the source, EDT a week later
        (dt.date(2013, 10, 29), dt.timedelta(hours=1)),  # EDT in the source, EST a week later
    ],
)
def test_a_shift_across_a_clock_change_keeps_local_hours_and_recomputes_utc(
    tmp_path: Path, source: dt.date, utc_moves_by: dt.timedelta
) -> None:
    landing, day = tmp_path / "landing", source + dt.timedelta(days=7)
    replay(landing, day, day, shift_days=7)
    for dataset in DAILY:
        shifted, original = typed_day(landing, dataset, day), source_day_rows(dataset, source)
        assert shifted.height == original.height > 0
        assert shifted["hour"].to_list() == original["hour"].cast(pl.Int32).to_list()
        assert (utc(shifted) - utc(original)).unique().to_list() == [dt.timedelta(days=7) + utc_moves_by]
        local = utc(shifted).dt.convert_time_zone(NEW_YORK)
        assert local.dt.date().unique().to_list() == [day]
        assert local.dt.hour().to_list() == shifted["hour"].to_list()
    flights, weather = ingested(landing, day, day)
    assert flights.rejects.height == weather.rejects.height == 0


def test_weather_on_clock_change_days_validates_and_an_unshifted_autumn_keeps_both_reports(
    tmp_path: Path,
) -> None:
    spring, autumn = dt.date(2013, 3, 10), dt.date(2013, 11, 3)
    shifted = tmp_path / "shifted" / "landing"
    # 2013-03-03 and 2013-10-27 had 24 hours; a week later the clock skips or repeats one.
    replay(shifted, spring, spring, datasets=("weather",), shift_days=7)
    replay(shifted, autumn, autumn, datasets=("weather",), shift_days=7)
    assert 2 not in typed_day(shifted, "weather", spring)["hour"].to_list()
    assert typed_day(shifted, "weather", autumn)["hour"].to_list().count(1) == 3
    zone = LandingZone(str(shifted), str(tmp_path / "quarantine"))
    airports = read_reference(zone, AIRPORTS_LANDING, now=NOW)["faa"].to_list()
    batch = ingest_days(
        zone, WEATHER_LANDING, [spring, autumn], lambda f: validate_weather(f, airports), now=NOW
    )
    assert batch.rejects.height == 0
    assert (
        batch.valid.height
        == source_rows("weather", dt.date(2013, 3, 3)) + source_rows("weather", dt.date(2013, 10, 27)) - 3
    )

    unshifted = tmp_path / "unshifted"
    replay(unshifted, autumn, autumn, datasets=("weather",))
    frame = typed_day(unshifted, "weather", autumn)
    assert frame["hour"].to_list().count(1) == 6
    assert frame["time_hour"].to_list() == source_day_rows("weather", autumn)["time_hour"].to_list()


def test_plane_build_years_move_by_the_whole_years_of_the_shift(tmp_path: Path) -> None:
    landing, day = tmp_path / "landing", FIRST + dt.timedelta(days=SHIFT_2026)
    replay(landing, day, day, datasets=(), shift_days=SHIFT_2026)
    data = (landing / "reference" / "planes.csv").read_bytes()
    planes, source = parse_landing_csv(data, PLANES_LANDING, "planes"), read_source("planes")
    assert planes["tailnum"].to_list() == source["tailnum"].to_list()
    assert planes["year"].to_list() == [None if y is None else int(y) + 13 for y in source["year"]]
    assert planes["year"].null_count() == source["year"].null_count() > 0


def test_repeat_replays_years_past_the_shifted_one_every_364_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = FIRST + dt.timedelta(days=SHIFT_2026)
    assert first == dt.date(2025, 12, 30)
    assert source_day(first, SHIFT_2026) == FIRST
    assert source_day(dt.date(2026, 12, 29), SHIFT_2026) == dt.date(2013, 12, 31)  # the first year whole
    assert source_day(dt.date(2026, 12, 30), SHIFT_2026) == dt.date(2013, 1, 2)
    for day in span(dt.date(2035, 12, 20), dt.date(2035, 12, 31)):
        source = source_day(day, SHIFT_2026)
        assert source.year == 2013
        assert (day - source).days == SHIFT_2026 + 364 * 10
        assert day.weekday() == source.weekday()

    landing, last = tmp_path / "landing", dt.date(2035, 12, 31)
    assert main(args(landing, last, last, "--shift-days", str(SHIFT_2026), "--repeat")) == 0
    capsys.readouterr()
    for dataset in DAILY:
        frame = typed_day(landing, dataset, last)
        assert frame.height == source_rows(dataset, source_day(last, SHIFT_2026)) > 0
    flights, weather = ingested(landing, last, last)
    assert flights.rejects.height == weather.rejects.height == 0
