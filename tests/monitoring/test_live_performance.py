"""Matching predictions to outcomes by flight key, and per-day quality, on hand-made rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from ml.evaluation.metrics import expected_calibration_error
from ml.lake.schemas import BRONZE_FLIGHTS_SCHEMA
from ml.monitoring.live_performance import (
    daily_performance,
    match_outcomes,
    performance_breaches,
    performance_plot,
)
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA

DAY, NEXT = dt.date(2013, 3, 1), dt.date(2013, 3, 2)


def departure(hour: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def flights(rows: list[dict]) -> pl.DataFrame:
    base = {"flight_date": DAY, "origin": "EWR", "dest": "ORD", "dep_time": 900, "arr_delay": 0}
    return pl.DataFrame([{**base, **r} for r in rows]).select(
        [
            pl.col(c).cast(BRONZE_FLIGHTS_SCHEMA[c])
            for c in (
                "flight_date",
                "carrier",
                "flight",
                "tailnum",
                "origin",
                "dest",
                "sched_dep_utc",
                "dep_time",
                "arr_delay",
            )
        ]
    )


def predictions(rows: list[dict]) -> pl.DataFrame:
    base = {
        "request_id": "r1",
        "requested_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "position": 0,
        "model_version": 1,
        "snapshot_id": "s",
        "flight": None,
        "origin": "EWR",
        "dest": "ORD",
        "tailnum": None,
        "distance": 719,
        "flight_date": DAY,
        "delay_probability": 0.5,
        "role": "champion",
        "client": "app",
        "unknown_fields": "",
    }
    frame = pl.DataFrame([{**base, **r} for r in rows])
    return frame.select([pl.col(c).cast(t) for c, t in PREDICTION_LOG_SCHEMA.items()])


OUTCOMES = flights(
    [
        {"carrier": "UA", "flight": 1, "tailnum": "N1", "sched_dep_utc": departure(10), "arr_delay": 40},
        {"carrier": "UA", "flight": 2, "tailnum": "N2", "sched_dep_utc": departure(11), "arr_delay": 14},
        {
            "carrier": "UA",
            "flight": 3,
            "tailnum": "N3",
            "sched_dep_utc": departure(12),
            "dep_time": None,
            "arr_delay": None,
        },
        {"carrier": "UA", "flight": 4, "tailnum": "N4", "sched_dep_utc": departure(13), "arr_delay": None},
        # Two flights of one carrier, route and minute: the tail number (or flight number) tells them apart.
        {
            "carrier": "DL",
            "flight": 27,
            "tailnum": "N960DL",
            "sched_dep_utc": departure(14),
            "arr_delay": -27,
        },
        {
            "carrier": "DL",
            "flight": 269,
            "tailnum": "N909DL",
            "sched_dep_utc": departure(14),
            "arr_delay": 15,
        },
    ]
)


def test_each_prediction_is_matched_once_or_says_why_not() -> None:
    later = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    logged = predictions(
        [
            {"carrier": "UA", "sched_dep_utc": departure(10), "delay_probability": 0.2},
            {
                "carrier": "UA",
                "sched_dep_utc": departure(10),
                "delay_probability": 0.9,
                "requested_at": later,
            },
            {"carrier": "UA", "sched_dep_utc": departure(11)},
            {"carrier": "UA", "sched_dep_utc": departure(12)},
            {"carrier": "UA", "sched_dep_utc": departure(13)},
            {"carrier": "DL", "sched_dep_utc": departure(14), "tailnum": "N909DL"},
            {"carrier": "DL", "sched_dep_utc": departure(14), "flight": 27},
            {"carrier": "DL", "sched_dep_utc": departure(14)},
            {"carrier": "B6", "sched_dep_utc": departure(10)},
            {"carrier": "UA", "sched_dep_utc": departure(10, NEXT), "flight_date": NEXT},
        ]
    )
    matched = match_outcomes(logged, OUTCOMES)
    got = {
        (r["carrier"], r["sched_dep_utc"].hour, r["flight"], r["tailnum"], r["flight_date"]): (
            r["match"],
            r["outcome"],
            r["is_delayed"],
        )
        for r in matched.iter_rows(named=True)
    }
    assert got == {
        ("UA", 10, None, None, DAY): ("matched", "delayed", True),
        ("UA", 11, None, None, DAY): ("matched", "on_time", False),
        ("UA", 12, None, None, DAY): ("matched", "cancelled", None),
        ("UA", 13, None, None, DAY): ("matched", "diverted", None),
        ("DL", 14, None, "N909DL", DAY): ("matched", "delayed", True),
        ("DL", 14, 27, None, DAY): ("matched", "on_time", False),
        ("DL", 14, None, None, DAY): ("ambiguous", None, None),
        ("B6", 10, None, None, DAY): ("unmatched", None, None),
        ("UA", 10, None, None, NEXT): ("pending", None, None),
    }
    # The flight predicted twice counts once, with its latest answer.
    assert matched.filter(pl.col("carrier") == "UA", pl.col("sched_dep_utc") == departure(10))[
        "delay_probability"
    ].to_list() == [0.9]


def test_per_day_auc_and_calibration_equal_sklearn_and_small_days_are_not_scored() -> None:
    rng = np.random.default_rng(3)
    n = 400
    hours = [dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(n)]
    delayed = rng.random(n) < 0.3
    probability = np.clip(0.3 + 0.3 * (delayed - 0.3) + rng.normal(0, 0.2, n), 0.01, 0.99)
    outcomes = flights(
        [
            {
                "carrier": "UA",
                "flight": i,
                "tailnum": f"N{i}",
                "sched_dep_utc": h,
                "arr_delay": 60 if d else 0,
            }
            for i, (h, d) in enumerate(zip(hours, delayed, strict=True))
        ]
        + [
            {
                "carrier": "UA",
                "flight": 9999,
                "tailnum": "N0",
                "sched_dep_utc": departure(5, NEXT),
                "flight_date": NEXT,
            }
        ]
    )
    logged = predictions(
        [
            {"carrier": "UA", "sched_dep_utc": h, "position": i, "delay_probability": float(p)}
            for i, (h, p) in enumerate(zip(hours, probability, strict=True))
        ]
        + [{"carrier": "UA", "sched_dep_utc": departure(5, NEXT), "flight_date": NEXT}]
    )
    table = daily_performance(match_outcomes(logged, outcomes), min_outcomes=100)
    first, second = table.iter_rows(named=True)
    assert first["status"] == "scored" and first["outcomes"] == n
    assert first["roc_auc"] == pytest.approx(roc_auc_score(delayed, probability), abs=1e-12)
    assert first["calibration_error"] == pytest.approx(
        expected_calibration_error(delayed, probability), abs=1e-12
    )
    assert first["observed_rate"] == pytest.approx(delayed.mean())
    assert (second["flight_date"], second["status"], second["roc_auc"]) == (NEXT, "too_few_outcomes", None)

    over = performance_breaches(table, auc_floor=0.99, max_calibration_error=1.0)
    assert over.select("flight_date", "metric", "threshold").rows() == [(DAY, "roc_auc", 0.99)]
    assert performance_breaches(table, auc_floor=0.5, max_calibration_error=1.0).is_empty()
    assert performance_breaches(table, auc_floor=0.0, max_calibration_error=1.0, model_version=2).is_empty()
    assert performance_plot(table, 0.6).startswith(b"\x89PNG")


def test_a_day_whose_flights_have_not_landed_is_pending() -> None:
    logged = predictions([{"carrier": "UA", "sched_dep_utc": departure(10)}])
    table = daily_performance(match_outcomes(logged, OUTCOMES.clear()))
    assert table.select("status", "pending", "outcomes").rows() == [("pending", 1, 0)]
