"""Trailing delay rates and volumes against a brute-force count over random history."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl

from ml.features.flight_features import DELAY_MINUTES, TRAILING_KEYS, WINDOWS, _trailing

START = dt.date(2013, 3, 1)


def random_history(seed: int, days: int = 60, per_day: int = 25) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for offset in range(days):
        if rng.random() < 0.15:
            continue  # gaps: days with no flights at all
        for _ in range(rng.randint(0, per_day)):
            delay = rng.choice([None, rng.randint(-30, 120)])
            rows.append(
                {
                    "flight_date": START + dt.timedelta(days=offset),
                    "carrier": rng.choice("ABC"),
                    "origin": rng.choice(["EWR", "JFK"]),
                    "dest": rng.choice(["ORD", "ATL", "LAX"]),
                    "arr_delay": delay,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "flight_date": pl.Date,
            "carrier": pl.String,
            "origin": pl.String,
            "dest": pl.String,
            "arr_delay": pl.Int32,
        },
    )


def brute_force(
    history: pl.DataFrame, key: tuple[str, ...], values: tuple, day: dt.date, window: int
) -> tuple[int, float | None]:
    inside = history.filter(
        (pl.col("flight_date") < day)
        & (pl.col("flight_date") >= day - dt.timedelta(days=window))
        & pl.col("arr_delay").is_not_null()
    )
    for column, value in zip(key, values, strict=True):
        inside = inside.filter(pl.col(column) == value)
    n = inside.height
    delayed = inside.filter(pl.col("arr_delay") >= DELAY_MINUTES).height
    return n, (delayed / n if n else None)


def test_window_sums_equal_a_brute_force_count_including_gaps_and_unseen_keys() -> None:
    history = random_history(seed=7)
    targets = pl.DataFrame(
        {
            "flight_date": [START + dt.timedelta(days=d) for d in (0, 5, 29, 30, 45, 59, 70)],
            "carrier": ["A", "B", "C", "A", "B", "C", "Z"],
            "origin": ["EWR", "JFK", "EWR", "JFK", "EWR", "JFK", "EWR"],
            "dest": ["ORD", "ATL", "LAX", "ORD", "ATL", "LAX", "ORD"],
        },
        schema={"flight_date": pl.Date, "carrier": pl.String, "origin": pl.String, "dest": pl.String},
    )

    result = _trailing(history, targets)

    assert result.height == targets.height
    for row in result.iter_rows(named=True):
        for name, key in TRAILING_KEYS.items():
            values = tuple(row[c] for c in key)
            for w in WINDOWS:
                n, rate = brute_force(history, key, values, row["flight_date"], w)
                assert row[f"{name}_flights_{w}d"] == n, (name, w, row)
                if rate is None:
                    assert row[f"{name}_delay_rate_{w}d"] is None
                else:
                    assert abs(row[f"{name}_delay_rate_{w}d"] - rate) < 1e-12
