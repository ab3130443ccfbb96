"""Scaled replays: copies of each flight with unique keys and the source labels, the same bytes each time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml.ingest.parse import parse_landing_csv
from ml.ingest.replay import main, replay
from ml.ingest.source_data import read_source
from ml.ingest.synthetic import flights_on
from ml.lake.schemas import FLIGHT_KEY, PLANES_LANDING
from tests.ml.replay_support import (
    LABELS,
    SHIFT_2026,
    args,
    ingested,
    minutes,
    snapshot,
    source_day_rows,
    source_rows,
    typed_day,
)


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
