"""Model inputs of scheduled flights at request time, from the schedule and the online snapshot.

The same functions of `ml.features.flight_features` that build the offline rows build these, on the
snapshot's running totals, weather and planes, so a served flight has the row it has
in the feature table (`online_features`).

A polars query costs about a millisecond however few its rows (planning, its thread
pool), while a request of one flight needs a few microseconds of lookups; so the server
builds rows of small requests with `OnlineLookup`, the same lookups on dictionaries and
sorted lists made once per snapshot. The tests hold it to `online_features` on every
flight of a test split and on the edge cases (no plane, no weather, daylight-saving days).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections.abc import Sequence
from typing import NamedTuple
from zoneinfo import ZoneInfo

import polars as pl

from ml.features.flight_features import (
    FEATURE_SCHEMA,
    LABEL,
    TRAILING_KEYS,
    WEATHER_COLUMNS,
    WEATHER_TOLERANCE,
    WINDOWS,
    holiday_table,
    schedule_features,
    trailing_features,
    weather_features,
    weather_reports,
)
from ml.lake.schemas import TIMESTAMP_UTC
from ml.online.snapshot import OnlineSnapshot
from ml.settings import NEW_YORK

REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "carrier": pl.String(),
    "origin": pl.String(),
    "dest": pl.String(),
    "sched_dep_utc": TIMESTAMP_UTC,
    "tailnum": pl.String(),
    "distance": pl.Int32(),
}
ONLINE_COLUMNS = [c for c in FEATURE_SCHEMA if c not in ("flight", LABEL)]
"""Feature columns a schedule determines: all but the flight number (not a feature) and the label."""
_ROW = "__row"
_TRAILING_DAY = "__trailing_day"


def flight_date(sched_dep_utc: pl.Expr) -> pl.Expr:
    """The local New York date of a departure: the day a flight belongs to in the feature table."""
    return sched_dep_utc.dt.convert_time_zone(NEW_YORK).dt.date()


def servable_range(snapshot: OnlineSnapshot, max_days_ahead: int) -> tuple[dt.date, dt.date]:
    """First and last flight day a server answers for with this snapshot.

    Before `first_day` the snapshot lacks the trailing window; more than
    `max_days_ahead` days after its last day its numbers are too old to stand for
    the flight's.
    """
    return snapshot.first_day, snapshot.last_day + dt.timedelta(days=max_days_ahead)


def online_features(requests: pl.DataFrame, snapshot: OnlineSnapshot) -> pl.DataFrame:
    """One feature row per request row, in request order, typed as the feature table."""
    missing = [c for c in REQUEST_SCHEMA if c not in requests.columns]
    if missing:
        raise ValueError(f"request frame lacks {', '.join(missing)}")
    frame = (
        requests.select([pl.col(c).cast(t) for c, t in REQUEST_SCHEMA.items()])
        .with_row_index(_ROW)
        .with_columns(flight_date(pl.col("sched_dep_utc")).alias("flight_date"))
    )
    frame = weather_features(schedule_features(frame, snapshot.planes), snapshot.weather)
    latest = snapshot.last_day + dt.timedelta(days=1)
    frame = frame.with_columns(
        pl.min_horizontal(pl.col("flight_date"), pl.lit(latest)).alias(_TRAILING_DAY),
        (pl.col("dep_hour") * 100 + pl.col("dep_minute")).alias("sched_dep_time"),
    )
    frame = trailing_features(snapshot.totals, frame, day=_TRAILING_DAY)
    return frame.sort(_ROW).select([pl.col(c).cast(FEATURE_SCHEMA[c]) for c in ONLINE_COLUMNS])


# --- the same rows without a DataFrame, for small requests ------------------------------------

_LOCAL = ZoneInfo(NEW_YORK)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECONDS = 1_000_000
_WEATHER_TOLERANCE_US = WEATHER_TOLERANCE // dt.timedelta(microseconds=1)
"""Inclusive, as in polars' join_asof."""
_OFFSETS = sorted({1, *(w + 1 for w in WINDOWS)})
_HOLIDAY_DAYS_AHEAD = 31
ONLINE_SCHEMA: dict[str, pl.DataType] = {c: FEATURE_SCHEMA[c] for c in ONLINE_COLUMNS}


class Schedule(NamedTuple):
    """One request row: what `REQUEST_SCHEMA` holds, with an aware departure time."""

    carrier: str
    origin: str
    dest: str
    sched_dep_utc: dt.datetime
    tailnum: str | None
    distance: int


def local_day(departure: dt.datetime) -> dt.date:
    """`flight_date` of one departure: its local New York date."""
    return departure.astimezone(_LOCAL).date()


def _microseconds(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _MICROSECONDS + delta.microseconds


@functools.lru_cache(maxsize=1024)
def _holiday_distances(day: dt.date) -> tuple[int, int]:
    to_next, since_last = holiday_table(day, day).row(0)[1:]
    return int(to_next), int(since_last)


class _Totals:
    """Running totals of one key value, by day: what a backward as-of join looks up."""

    __slots__ = ("d", "days", "n")

    def __init__(self) -> None:
        self.days: list[int] = []
        self.n: list[int] = []
        self.d: list[int] = []

    def at(self, day: int) -> tuple[int, int]:
        """Totals at the end of the latest day on or before `day` (ordinal); zeros before the first."""
        i = bisect.bisect_right(self.days, day) - 1
        return (self.n[i], self.d[i]) if i >= 0 else (0, 0)


class OnlineLookup:
    """A snapshot indexed for row-at-a-time lookups: the rows of `online_features` in plain Python."""

    def __init__(self, snapshot: OnlineSnapshot) -> None:
        self.snapshot = snapshot
        self.latest = snapshot.last_day + dt.timedelta(days=1)
        self.planes: dict[str, tuple[int | None, int | None]] = {
            tailnum: (year, seats)
            for tailnum, year, seats in snapshot.planes.select("tailnum", "year", "seats").iter_rows()
            if tailnum is not None
        }
        self.weather: dict[str, tuple[list[int], list[tuple]]] = {}
        for origin, available, *values in weather_reports(snapshot.weather).iter_rows():
            times, rows = self.weather.setdefault(origin, ([], []))
            times.append(_microseconds(available))
            rows.append((available, *values))
        self.totals: dict[str, dict[tuple[str, ...], _Totals]] = {}
        for name, key in TRAILING_KEYS.items():
            by_key: dict[tuple[str, ...], _Totals] = {}
            frame = snapshot.totals[name].sort([*key, "as_of"])
            for row in frame.select(*key, "as_of", "n", "d").iter_rows():
                totals = by_key.setdefault(row[: len(key)], _Totals())
                totals.days.append(row[-3].toordinal())
                totals.n.append(row[-2])
                totals.d.append(row[-1])
            self.totals[name] = by_key
        last = snapshot.last_day + dt.timedelta(days=_HOLIDAY_DAYS_AHEAD)
        self.holidays: dict[dt.date, tuple[int, int]] = {
            day: (to_next, since_last)
            for day, to_next, since_last in holiday_table(snapshot.first_day, last).iter_rows()
        }

    def columns(self, schedules: Sequence[Schedule]) -> dict[str, list]:
        """The `ONLINE_COLUMNS` of `schedules`, in order, as lists (None for a null)."""
        rows = [self._row(s) for s in schedules]
        return {name: [row[j] for row in rows] for j, name in enumerate(ONLINE_COLUMNS)}

    def frame(self, schedules: Sequence[Schedule]) -> pl.DataFrame:
        """`columns` as a frame typed as `online_features` answers: what the tests compare."""
        return pl.DataFrame(self.columns(schedules), schema=ONLINE_SCHEMA)

    def _row(self, s: Schedule) -> tuple:
        departure = s.sched_dep_utc.astimezone(dt.UTC)
        local = departure.astimezone(_LOCAL)
        day = local.date()
        to_holiday, since_holiday = self.holidays.get(day) or _holiday_distances(day)
        plane_year, seats = (
            self.planes.get(s.tailnum, (None, None)) if s.tailnum is not None else (None, None)
        )
        weather: tuple = (None,) * (len(WEATHER_COLUMNS) + 1)
        age = None
        observed = self.weather.get(s.origin)
        if observed is not None:
            at = _microseconds(departure)
            i = bisect.bisect_right(observed[0], at) - 1
            if i >= 0 and at - observed[0][i] <= _WEATHER_TOLERANCE_US:
                weather = observed[1][i]
                age = (at - observed[0][i]) // (60 * _MICROSECONDS)
        values = {
            "flight_date": day,
            "carrier": s.carrier,
            "origin": s.origin,
            "sched_dep_time": local.hour * 100 + local.minute,
            "dest": s.dest,
            "tailnum": s.tailnum,
            "sched_dep_utc": departure,
            "weather_time": weather[0],
            "month": day.month,
            "weekday": day.isoweekday(),
            "dep_hour": local.hour,
            "dep_minute": local.minute,
            "days_to_holiday": to_holiday,
            "days_since_holiday": since_holiday,
            "distance": s.distance,
            "plane_age": None if plane_year is None else day.year - plane_year,
            "plane_seats": seats,
            **dict(zip(WEATHER_COLUMNS, weather[1:], strict=True)),
            "weather_age_minutes": age,
            **self._trailing(s, min(day, self.latest).toordinal()),
        }
        return tuple(values[c] for c in ONLINE_COLUMNS)

    def _trailing(self, s: Schedule, day: int) -> dict[str, int | float | None]:
        out: dict[str, int | float | None] = {}
        fields = {"carrier": s.carrier, "origin": s.origin, "dest": s.dest}
        for name, key in TRAILING_KEYS.items():
            totals = self.totals[name].get(tuple(fields[k] for k in key))
            at = {o: totals.at(day - o) if totals is not None else (0, 0) for o in _OFFSETS}
            for w in WINDOWS:
                n = at[1][0] - at[w + 1][0]
                d = at[1][1] - at[w + 1][1]
                out[f"{name}_flights_{w}d"] = n
                out[f"{name}_delay_rate_{w}d"] = d / n if n > 0 else None
        return out
