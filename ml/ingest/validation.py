"""Row-level validation: rows that parse but cannot be true go to rejects with a reason.

Frames carry the file each row came from and the day that file delivers (`with_file_day`),
so the rows of many files are validated in one pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

import polars as pl

from ml.ingest.parse import LINE_COLUMN, SOURCE_COLUMN
from ml.lake.quality import first_of_key
from ml.lake.schemas import (
    BRONZE_FLIGHTS_SCHEMA,
    BRONZE_WEATHER_SCHEMA,
    FLIGHT_KEY,
    FLIGHTS_LANDING,
    REJECTS_SCHEMA,
    TIMESTAMP_UTC,
    WEATHER_KEY,
    WEATHER_LANDING,
    LandingContract,
)
from ml.settings import NEW_YORK

REASON = "__reason"
DAY_COLUMN = "__day"
LOCAL_COLUMN = "__local_time"


@dataclass(frozen=True)
class Validated:
    valid: pl.DataFrame
    rejects: pl.DataFrame


def with_file_day(typed: pl.DataFrame, day: dt.date, source: str) -> pl.DataFrame:
    """Tag the rows of one parsed file with its day and source."""
    return typed.with_columns(pl.lit(source).alias(SOURCE_COLUMN), pl.lit(day).alias(DAY_COLUMN))


def _hhmm_invalid(col: str, allow_2400: bool) -> pl.Expr:
    top = 2400 if allow_2400 else 2359
    c = pl.col(col)
    return c.is_not_null() & ((c < 0) | (c > top) | (c % 100 >= 60))


def _time_hour_utc() -> pl.Expr:
    return (
        pl.col("time_hour")
        .str.strip_chars()
        .str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False)
        .dt.replace_time_zone("UTC")
        .cast(TIMESTAMP_UTC)
    )


def _with_times(typed: pl.DataFrame) -> pl.DataFrame:
    """`time_hour` parsed as UTC, its text kept (`__time_hour_raw`), and its New York wall-clock
    time (`__local_time`).

    A day's rows share a few dozen hours: each distinct text is parsed and converted once and
    the rows look their values up (a third of parsing and converting every row). The wall
    clock is read once as a naive value: each part read from the zoned value converts every
    row again.
    """
    raw = pl.col("time_hour")
    hours = typed.select(raw.unique().drop_nulls()).with_columns(_time_hour_utc().alias("__utc"))
    local = pl.col("__utc").dt.convert_time_zone(NEW_YORK).dt.replace_time_zone(None)
    hours = hours.with_columns(local.alias("__local"))
    texts = hours["time_hour"]
    return typed.with_columns(
        raw.alias("__time_hour_raw"),
        raw.replace_strict(texts, hours["__utc"], default=None, return_dtype=TIMESTAMP_UTC).alias(
            "time_hour"
        ),
        raw.replace_strict(texts, hours["__local"], default=None, return_dtype=pl.Datetime("us")).alias(
            LOCAL_COLUMN
        ),
    )


def _local_mismatch() -> pl.Expr:
    local = pl.col(LOCAL_COLUMN)
    return pl.col("time_hour").is_not_null() & (
        (local.dt.year() != pl.col("year"))
        | (local.dt.month() != pl.col("month"))
        | (local.dt.day() != pl.col("day"))
        | (local.dt.hour() != pl.col("hour"))
    )


def _common_rules(contract: LandingContract) -> list[tuple[pl.Expr, pl.Expr | str]]:
    day = pl.col(DAY_COLUMN)
    rules: list[tuple[pl.Expr, pl.Expr | str]] = [
        (pl.col(c).is_null(), f"missing {c}") for c in contract.required
    ]
    rules.append(
        (
            (pl.col("year") != day.dt.year())
            | (pl.col("month") != day.dt.month())
            | (pl.col("day") != day.dt.day()),
            pl.concat_str(pl.lit("date differs from file day "), day.dt.to_string("%Y-%m-%d")),
        )
    )
    rules.append(
        (
            pl.col("time_hour").is_null() & pl.col("__time_hour_raw").is_not_null(),
            "unparseable time_hour",
        )
    )
    rules.append((_local_mismatch(), "time_hour disagrees with local date and hour"))
    return rules


def _apply(
    frame: pl.DataFrame, rules: list[tuple[pl.Expr, pl.Expr | str]], key: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows that break no rule and are the first of their key; the others with every rule they break.

    The rules are evaluated once as one flag; the reasons are spelled out for the flagged
    rows only (every rule is row by row), since building a list of reasons for every row
    cost more than all the rules. A row that breaks no rule but repeats an earlier row's key
    (any earlier row, rejected or not) is a duplicate.
    """
    broken = frame.select(pl.any_horizontal([cond.fill_null(False) for cond, _ in rules])).to_series()
    duplicate = ~first_of_key(frame, key) & ~broken
    rejected = broken | duplicate
    good = frame.filter(~rejected)
    reasons = pl.concat_list(
        [
            pl.when(cond.fill_null(False)).then(pl.lit(text) if isinstance(text, str) else text)
            for cond, text in rules
        ]
    )
    bad = (
        frame.filter(rejected)
        .with_columns(reasons.list.drop_nulls().list.join("; ").alias(REASON))
        .with_columns(
            pl.when(duplicate.filter(rejected))
            .then(pl.lit("duplicate key " + "/".join(key)))
            .otherwise(pl.col(REASON))
            .alias(REASON)
        )
    )
    payload = [c for c in frame.columns if not c.startswith("__")]
    rejects = bad.select(
        pl.col(DAY_COLUMN).alias("day"),
        pl.col(SOURCE_COLUMN).alias("source_file"),
        pl.col(LINE_COLUMN).alias("line"),
        pl.col(REASON).alias("reason"),
        pl.struct(payload).struct.json_encode().alias("record"),
    ).cast(REJECTS_SCHEMA)  # type: ignore[arg-type]
    return good, rejects


def validate_flights(typed: pl.DataFrame, airports: Collection[str], carriers: Collection[str]) -> Validated:
    frame = _with_times(typed)
    airports_s = pl.Series(list(airports), dtype=pl.String)
    carriers_s = pl.Series(list(carriers), dtype=pl.String)
    rules = _common_rules(FLIGHTS_LANDING)
    rules += [
        (_hhmm_invalid("sched_dep_time", False), "impossible sched_dep_time"),
        (_hhmm_invalid("sched_arr_time", True), "impossible sched_arr_time"),
        (_hhmm_invalid("dep_time", True), "impossible dep_time"),
        (_hhmm_invalid("arr_time", True), "impossible arr_time"),
        (
            (pl.col("hour") != pl.col("sched_dep_time") // 100)
            | (pl.col("minute") != pl.col("sched_dep_time") % 100),
            "hour/minute disagree with sched_dep_time",
        ),
        (pl.col("distance") <= 0, "non-positive distance"),
        (pl.col("air_time") < 0, "negative air_time"),
        (pl.col("origin").is_in(airports_s.implode()).not_(), "unknown origin airport"),
        (pl.col("dest").is_in(airports_s.implode()).not_(), "unknown destination airport"),
        (pl.col("carrier").is_in(carriers_s.implode()).not_(), "unknown carrier"),
    ]
    frame = frame.with_columns(pl.col(DAY_COLUMN).alias("flight_date"))
    good, rejects = _apply(frame, rules, FLIGHT_KEY)
    valid = good.with_columns(
        (pl.col("time_hour") + pl.duration(minutes=pl.col("minute"))).alias("sched_dep_utc")
    ).select([pl.col(c).cast(t) for c, t in BRONZE_FLIGHTS_SCHEMA.items()])
    return Validated(valid=valid, rejects=rejects)


def validate_weather(typed: pl.DataFrame, airports: Collection[str]) -> Validated:
    frame = _with_times(typed)
    airports_s = pl.Series(list(airports), dtype=pl.String)
    rules = _common_rules(WEATHER_LANDING)
    rules += [
        ((pl.col("hour") < 0) | (pl.col("hour") > 23), "impossible hour"),
        (pl.col("origin").is_in(airports_s.implode()).not_(), "unknown origin airport"),
        ((pl.col("humid") < 0) | (pl.col("humid") > 100), "humidity outside 0..100"),
        ((pl.col("wind_dir") < 0) | (pl.col("wind_dir") > 360), "wind_dir outside 0..360"),
        (pl.col("visib") < 0, "negative visibility"),
    ]
    frame = frame.with_columns(pl.col(DAY_COLUMN).alias("obs_date"))
    good, rejects = _apply(frame, rules, WEATHER_KEY)
    valid = good.select([pl.col(c).cast(t) for c, t in BRONZE_WEATHER_SCHEMA.items()])
    return Validated(valid=valid, rejects=rejects)
