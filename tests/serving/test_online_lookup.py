"""The server's lookup path builds the same rows and model inputs as the frame path, bit for bit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.online.features import REQUEST_SCHEMA, OnlineLookup, Schedule, online_features
from ml.online.snapshot import OnlineSnapshot, current_id, load
from ml.training.onnx_model import OnnxModel
from tests.conftest import LAST_DAY, Served

NEW_YORK_WINTER = dt.timezone(dt.timedelta(hours=-5))


@pytest.fixture(scope="module")
def snapshot(served: Served) -> OnlineSnapshot:
    lake = str(served.platform.root / "lake")
    return load(lake, current_id(lake) or "")


def schedules_of(frame: pl.DataFrame) -> list[Schedule]:
    return [Schedule(*row) for row in frame.select(list(REQUEST_SCHEMA)).iter_rows()]


def edge_cases(snapshot: OnlineSnapshot) -> list[Schedule]:
    """Flights the test split lacks: no plane, no weather, unknown keys, DST days, days far ahead."""
    observation = snapshot.weather.filter(pl.col("origin") == "JFK")["time_hour"].max()
    known = observation + dt.timedelta(hours=1)  # no minute in the data: known at the end of its hour
    utc = dt.UTC
    departures = [
        known + dt.timedelta(hours=3),  # the tolerance, counted from availability, is inclusive
        known + dt.timedelta(hours=3, microseconds=1),
        known - dt.timedelta(microseconds=1),  # stamped before, known after: the report before it
        known,
        dt.datetime.combine(LAST_DAY, dt.time(23, 59, 30), NEW_YORK_WINTER),
        dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(0, 0), NEW_YORK_WINTER),
        dt.datetime(2013, 3, 10, 6, 59, tzinfo=utc),  # 01:59 EST, a minute before clocks spring forward
        dt.datetime(2013, 3, 10, 7, 0, tzinfo=utc),  # 03:00 EDT
        dt.datetime(2013, 11, 3, 5, 30, tzinfo=utc),  # 01:30 EDT
        dt.datetime(2013, 11, 3, 6, 30, tzinfo=utc),  # 01:30 EST, the same local time again
        dt.datetime(2013, 7, 4, 16, 0, tzinfo=utc),  # a holiday, months after the snapshot
        dt.datetime(2013, 12, 31, 23, 0, tzinfo=utc),  # local 18:00, the last day of the year
    ]
    flights = []
    for i, departure in enumerate(departures):
        flights += [
            Schedule("B6", "JFK", "BOS", departure, "N14228", 187),
            Schedule("UA", "EWR", "ORD", departure, None, 719),  # no tail number
            Schedule("ZZ", "JFK", "XYZ", departure, "N0NE", 1),  # unknown carrier, route and plane
            Schedule("AA", "ABC", "MIA", departure, f"N{i}", 1089),  # an origin without weather
        ]
    return flights


def test_lookup_rows_equal_online_features_on_the_test_split_and_edge_cases(
    served: Served, snapshot: OnlineSnapshot
) -> None:
    test = pl.read_parquet(served.test_split)
    flights = schedules_of(test) + edge_cases(snapshot)
    frame = pl.DataFrame(flights, schema=REQUEST_SCHEMA, orient="row")
    lookup = OnlineLookup(snapshot)
    expected = online_features(frame, snapshot)
    assert_frame_equal(lookup.frame(flights), expected)
    # The edge cases reach the branches they are there for.
    edge = expected.tail(len(flights) - test.height)
    assert edge["weather_time"].null_count() not in (0, edge.height)
    assert edge["plane_age"].null_count() not in (0, edge.height)
    assert edge["route_flights_28d"].to_list().count(0) > 0
    assert edge["weather_age_minutes"].head(16).to_list()[::4] == [180, None, 59, 0]
    assert set(edge["month"].to_list()) >= {1, 3, 7, 11, 12}
    assert set(edge["dep_hour"].to_list()) >= {1, 3}


def test_lookup_inputs_and_probabilities_equal_the_frame_path(
    served: Served, snapshot: OnlineSnapshot
) -> None:
    test = pl.read_parquet(served.test_split)
    flights = schedules_of(test) + edge_cases(snapshot)
    model = OnnxModel(served.champion.artifact_uri)
    frame = online_features(pl.DataFrame(flights, schema=REQUEST_SCHEMA, orient="row"), snapshot)
    columns = OnlineLookup(snapshot).columns(flights)
    codes, numbers = model.preprocessor.transform(frame)
    fast_codes, fast_numbers = model.preprocessor.transform_columns(columns)
    assert np.array_equal(fast_codes, codes)
    assert fast_numbers.dtype == numbers.dtype and np.array_equal(fast_numbers, numbers)
    assert (codes == 0).any() and (codes > 0).any()  # unknown and known categories both seen
    assert np.array_equal(model.predict_columns(columns), model.predict(frame))
    one = model.predict_columns(OnlineLookup(snapshot).columns(flights[:1]))
    assert one.shape == (1,) and one[0] == model.predict(frame.head(1))[0]
