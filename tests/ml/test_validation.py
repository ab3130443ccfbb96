"""Row-level validation and the key checks behind it, on frames built by hand."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from ml.ingest.parse import parse_landing_csv
from ml.ingest.validation import validate_flights, with_file_day
from ml.lake.quality import duplicate_keys, first_of_key
from ml.lake.schemas import FLIGHT_KEY, FLIGHTS_LANDING
from tests.ml.test_landing_parse import FLIGHTS_HEADER, FLIGHTS_ROWS, flights_bytes, with_field

DAY = dt.date(2013, 1, 1)
SOURCE = "landing/flights/2013-01-01.csv"
AIRPORTS = ["EWR", "LGA", "JFK", "IAH", "RDU"]
CARRIERS = ["UA", "EV"]


def _validate(rows: list[str]):  # type: ignore[no-untyped-def]
    typed = parse_landing_csv(flights_bytes(rows), FLIGHTS_LANDING, SOURCE)
    return validate_flights(with_file_day(typed, DAY, SOURCE), AIRPORTS, CARRIERS)


def test_a_row_breaking_several_rules_names_them_all_and_good_rows_are_kept() -> None:
    bad = with_field(
        with_field(FLIGHTS_ROWS[1], FLIGHTS_HEADER, "dest", "ZZZ"), FLIGHTS_HEADER, "distance", "0"
    )
    validated = _validate([FLIGHTS_ROWS[0], bad, FLIGHTS_ROWS[2]])
    assert validated.rejects["line"].to_list() == [3]
    assert validated.rejects["reason"].to_list() == ["non-positive distance; unknown destination airport"]
    assert validated.valid["flight"].to_list() == [1545, 4308]


def test_a_repeated_key_is_a_duplicate_even_when_its_first_row_was_rejected() -> None:
    first_bad = with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "dest", "ZZZ")
    repeat = FLIGHTS_ROWS[0]
    validated = _validate([first_bad, FLIGHTS_ROWS[1], repeat, FLIGHTS_ROWS[1]])
    reasons = dict(zip(validated.rejects["line"], validated.rejects["reason"], strict=True))
    key = "duplicate key " + "/".join(FLIGHT_KEY)
    assert reasons == {2: "unknown destination airport", 4: key, 5: key}
    assert validated.valid["flight"].to_list() == [1714]


def _random_keys(rows: int, values: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "a": [rng.choice([None, *range(values)]) for _ in range(rows)],
            "b": [rng.choice([None, "x", "y"]) for _ in range(rows)],
        },
        schema={"a": pl.Int32(), "b": pl.String()},
    )


@pytest.mark.parametrize(("rows", "values"), [(0, 1), (50, 1000), (200, 5), (2000, 40)])
def test_key_checks_agree_with_the_exact_polars_ones(rows: int, values: int) -> None:
    frame = _random_keys(rows, values, seed=rows)
    assert duplicate_keys(frame, ["a", "b"]) == int(frame.is_duplicated().sum())
    exact = frame.select(pl.struct("a", "b").is_first_distinct()).to_series()
    assert first_of_key(frame, ["a", "b"]).to_list() == exact.to_list()


def test_time_hour_must_name_the_local_date_and_hour_across_a_dst_change() -> None:
    day = dt.date(2013, 3, 10)  # clocks went forward at 02:00 local
    rows = [
        "2013,3,10,NA,130,NA,NA,400,NA,UA,1,N1,EWR,IAH,NA,1400,1,30,2013-03-10T06:00:00Z",  # 01:00 EST
        "2013,3,10,NA,330,NA,NA,600,NA,UA,2,N1,EWR,IAH,NA,1400,3,30,2013-03-10T07:00:00Z",  # 03:00 EDT
        "2013,3,10,NA,330,NA,NA,600,NA,UA,3,N1,EWR,IAH,NA,1400,3,30,2013-03-10T08:00:00Z",  # 04:00 EDT
    ]
    typed = parse_landing_csv(flights_bytes(rows), FLIGHTS_LANDING, SOURCE)
    validated = validate_flights(with_file_day(typed, day, SOURCE), AIRPORTS, CARRIERS)
    assert validated.rejects["reason"].to_list() == ["time_hour disagrees with local date and hour"]
    assert validated.rejects["line"].to_list() == [4]
    assert validated.valid["flight"].to_list() == [1, 2]
    assert "__local_time" not in validated.rejects["record"][0]
