"""The replay tool: one landing file per dataset and day, idempotent, never silently overwriting."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ml.ingest.batch import Batch, ingest_days, read_reference
from ml.ingest.landing_zone import LandingZone
from ml.ingest.parse import count_data_rows, parse_landing_csv
from ml.ingest.replay import EXIT_CONFLICT, main, replay
from ml.ingest.source_data import read_source
from ml.ingest.synthetic import flights_on, source_day
from ml.ingest.validation import validate_flights, validate_weather, with_file_day
from ml.lake.schemas import (
    AIRLINES_LANDING,
    AIRPORTS_LANDING,
    FLIGHT_KEY,
    FLIGHTS_LANDING,
    PLANES_LANDING,
    WEATHER_LANDING,
)
from ml.settings import NEW_YORK
from tests.conftest import module_help

REPOSITORY = Path(__file__).resolve().parents[2]
FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 3)
REFERENCE = ["airlines.csv", "airports.csv", "planes.csv"]


def day_files(landing: Path, dataset: str) -> list[str]:
    return sorted(p.name for p in (landing / dataset).iterdir())


def snapshot(landing: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(landing.rglob("*")) if p.is_file()}


def source_rows(dataset: str, day: dt.date) -> int:
    frame = read_source(dataset)
    return frame.filter(
        (pl.col("year") == str(day.year))
        & (pl.col("month") == str(day.month))
        & (pl.col("day") == str(day.day))
    ).height


def args(landing: Path, first: dt.date = FIRST, last: dt.date = LAST, *extra: str) -> list[str]:
    return ["--landing", str(landing), "--start", first.isoformat(), "--end", last.isoformat(), *extra]


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


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (
            "2014-01-01",
            "2014-01-02",
            "the source replays 2013-01-01..2013-12-31 (--repeat continues past 2013-12-31) "
            "with --shift-days 0; 2014-01-01..2014-01-02 is outside it",
        ),
        (
            "2012-12-31",
            "2013-01-01",
            "the source replays 2013-01-01..2013-12-31 (--repeat continues past 2013-12-31) "
            "with --shift-days 0; 2012-12-31..2013-01-01 is outside it",
        ),
        ("2013-12-31", "2014-01-01", "is outside it"),
        ("2013-01-03", "2013-01-01", "start 2013-01-03 is after end 2013-01-01"),
        ("2013-13-01", "2013-12-31", "invalid fromisoformat value: '2013-13-01'"),
    ],
)
def test_a_range_outside_2013_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: str, last: str, message: str
) -> None:
    landing = tmp_path / "landing"
    with pytest.raises(SystemExit) as info:
        main(["--landing", str(landing), "--start", first, "--end", last])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: python -m ml.ingest.replay")
    assert not landing.exists()


def test_replay_itself_refuses_a_range_outside_the_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"2013-01-01\.\.2013-12-31"):
        replay(tmp_path / "landing", dt.date(2013, 12, 31), dt.date(2014, 1, 1))
    assert not (tmp_path / "landing").exists()


def test_an_unknown_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args(tmp_path / "landing"), "--datasets", "flights,planes"])
    assert info.value.code == 2
    assert "unknown dataset(s): planes" in capsys.readouterr().err
    assert not (tmp_path / "landing").exists()


def test_help_runs_as_a_module_and_exits_zero() -> None:
    shown = module_help("ml.ingest.replay")
    assert shown.startswith("usage: python -m ml.ingest.replay")
    for option in (
        "--landing",
        "--start",
        "--end",
        "--datasets",
        "--force",
        "--shift-days",
        "--repeat",
        "--scale",
    ):
        assert option in shown


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


# --- shifted and scaled replays ------------------------------------------------------------

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAILY = ("flights", "weather")
LABELS = ["dep_delay", "arr_delay", "air_time", "distance", "carrier", "origin", "dest"]
SHIFT_2026 = 4746
"""678 weeks: 2013-01-01 (a Tuesday) lands on Tuesday 2025-12-30."""


def span(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def ingested(landing: Path, first: dt.date, last: dt.date) -> tuple[Batch, Batch]:
    """The platform's own ingestion of the landing files: flights and weather batches."""
    zone = LandingZone(str(landing), str(landing.parent / "quarantine"))
    airports = read_reference(zone, AIRPORTS_LANDING, now=NOW)["faa"].to_list()
    carriers = read_reference(zone, AIRLINES_LANDING, now=NOW)["carrier"].to_list()
    days = span(first, last)
    flights = ingest_days(
        zone, FLIGHTS_LANDING, days, lambda f: validate_flights(f, airports, carriers), now=NOW
    )
    weather = ingest_days(zone, WEATHER_LANDING, days, lambda f: validate_weather(f, airports), now=NOW)
    assert not flights.failed and not weather.failed
    return flights, weather


def typed_day(landing: Path, dataset: str, day: dt.date) -> pl.DataFrame:
    path = landing / dataset / f"{day.isoformat()}.csv"
    contract = FLIGHTS_LANDING if dataset == "flights" else WEATHER_LANDING
    return parse_landing_csv(path.read_bytes(), contract, str(path)).drop("__line")


def source_day_rows(dataset: str, day: dt.date) -> pl.DataFrame:
    return read_source(dataset).filter(
        (pl.col("year") == str(day.year))
        & (pl.col("month") == str(day.month))
        & (pl.col("day") == str(day.day))
    )


def utc(frame: pl.DataFrame) -> pl.Series:
    return frame["time_hour"].str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC")


def minutes(hhmm: pl.Series) -> pl.Series:
    return hhmm // 100 * 60 + hhmm % 100


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


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--shift-days", "4746"],
            "the source replays 2025-12-30..2026-12-29 (--repeat continues past 2026-12-29) "
            "with --shift-days 4746; 2013-01-01..2013-01-03 is outside it",
        ),
        (
            ["--shift-days", "4746", "--repeat"],
            "the source replays 2025-12-30 on with --shift-days 4746; 2013-01-01..2013-01-03 is outside it",
        ),
        (["--shift-days", "99999999"], "--shift-days 99999999 moves the source out of the calendar"),
        (["--scale", "0"], "--scale must be 1..1000, not 0"),
        (["--scale", "1001"], "--scale must be 1..1000, not 1001"),
    ],
)
def test_a_shifted_range_or_a_scale_the_source_cannot_give_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args(tmp_path / "landing"), *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "landing").exists()


def test_the_default_start_is_the_first_shifted_day(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert main(["--landing", str(landing), "--shift-days", str(SHIFT_2026), "--datasets", "flights"]) == 0
    assert day_files(landing, "flights") == ["2025-12-30.csv"]


def test_scale_multiplies_flights_with_unique_keys_the_source_labels_and_copied_planes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, copies = tmp_path / "landing", 4
    first, last = dt.date(2026, 3, 7), dt.date(2026, 3, 8)  # the 8th: the spring change, as in 2013
    argv = args(landing, first, last, "--shift-days", str(SHIFT_2026), "--scale", str(copies))
    assert main(argv) == 0
    assert "7 written" in capsys.readouterr().out

    data = (landing / "reference" / "planes.csv").read_bytes()
    planes, source_planes = parse_landing_csv(data, PLANES_LANDING, "planes"), read_source("planes")
    assert planes.height == copies * source_planes.height
    in_planes, source_in_planes = set(planes["tailnum"]), set(source_planes["tailnum"])
    for day in (first, last):
        frame = typed_day(landing, "flights", day)
        n = source_rows("flights", day - dt.timedelta(days=SHIFT_2026))
        assert frame.height == copies * n
        source = frame[:n]
        for c in range(1, copies):
            copy = frame[c * n : (c + 1) * n]
            assert copy.select(LABELS).equals(source.select(LABELS))
            tails = [None if t is None else f"S{c:03d}{t}" for t in source["tailnum"]]
            assert copy["tailnum"].to_list() == tails
            assert [t in in_planes for t in copy["tailnum"]] == [
                t in source_in_planes for t in source["tailnum"]
            ]
            moved = minutes(copy["sched_dep_time"]) - minutes(source["sched_dep_time"])
            assert moved.abs().max() <= 60  # type: ignore[operator]
            assert moved.n_unique() > 60
            for column in ("dep_time", "sched_arr_time", "arr_time"):
                lag = (minutes(copy[column]) - minutes(source[column]) - moved) % (24 * 60)
                assert lag.drop_nulls().unique().to_list() == [0]
            assert (copy["flight"] > 9000).all()
    flights, weather = ingested(landing, first, last)
    assert flights.rejects.height == weather.rejects.height == 0
    assert flights.valid.height == copies * sum(
        source_rows("flights", d - dt.timedelta(days=SHIFT_2026)) for d in (first, last)
    )
    assert not flights.valid.select(pl.struct(FLIGHT_KEY).is_duplicated().any()).item()

    assert main(argv) == 0
    assert "0 written, 7 unchanged, 0 replaced, 0 conflict" in capsys.readouterr().out


def test_a_copy_is_never_moved_into_the_hour_the_spring_change_skips() -> None:
    row = source_day_rows("flights", dt.date(2013, 1, 1))[:1].with_columns(
        sched_dep_time=pl.lit("130"), hour=pl.lit("1"), minute=pl.lit("30")
    )
    frame = flights_on(row, dt.date(2026, 3, 8), 200).with_columns(pl.col("hour").cast(int))
    assert frame.height == 200
    assert set(frame["hour"]) == {0, 1}  # 01:30 + up to an hour, but 02:xx does not exist that day
    assert frame.filter(pl.col("sched_dep_time") == "130").height > 1  # those kept the source time
    assert frame.select(pl.struct("flight", "sched_dep_time").is_duplicated().any()).item() is False


def test_the_same_arguments_give_the_same_bytes(tmp_path: Path) -> None:
    day = dt.date(2013, 7, 4)
    for name in ("a", "b"):
        replay(tmp_path / name, day, day, shift_days=7, scale=3)
    relative = [{p.relative_to(tmp_path / n): v[1] for p, v in snapshot(tmp_path / n).items()} for n in "ab"]
    assert relative[0] == relative[1]
    assert len(relative[0]) == 5


def test_ml_replay_is_the_same_command(tmp_path: Path) -> None:
    assert module_help("ml.replay") == module_help("ml.ingest.replay")
    done = subprocess.run(
        [sys.executable, "-m", "ml.replay", *args(tmp_path / "cli", FIRST, FIRST, "--scale", "2")],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    replay(tmp_path / "api", FIRST, FIRST, scale=2)
    cli, api = snapshot(tmp_path / "cli"), snapshot(tmp_path / "api")
    assert [v[1] for v in cli.values()] == [v[1] for v in api.values()]
