"""Point-in-time flight features: each row uses only what was known before its departure.

Weather is joined as of the scheduled departure (the latest observation at or before
it, never after); trailing delay rates come from days strictly before the flight's
day. A day's features depend on its own flights, the trailing window and one
previous day of weather, so they can be computed for any range of days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import holidays
import polars as pl

from ml.schemas import NEW_YORK, TIMESTAMP_UTC

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
WEATHER_TOLERANCE = "3h"
KEY_COLUMNS = ("flight_date", "carrier", "flight", "origin", "sched_dep_time")
LABEL = "is_delayed"
CATEGORICAL_FEATURES = ("carrier", "origin", "dest")


def lookback_days() -> int:
    """Days of flights before the first target day that the trailing features read."""
    return max(WINDOWS)


WEATHER_LOOKBACK_DAYS = 1


def trailing_feature_names() -> list[str]:
    return [
        f"{name}_{kind}_{w}d" for name in TRAILING_KEYS for w in WINDOWS for kind in ("delay_rate", "flights")
    ]


NUMERIC_FEATURES = (
    "month",
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


def _trailing(history: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Delay rates and volumes per key over the W days strictly before each target day.

    Window sums are differences of per-key running totals looked up as of the day
    before the window and the day before the target, so the cost grows with the days
    read, not with days times history.
    """
    known = history.filter(pl.col("arr_delay").is_not_null())
    result = targets
    for name, key in TRAILING_KEYS.items():
        totals = (
            known.group_by([*key, "flight_date"])
            .agg(pl.len().alias("n"), (pl.col("arr_delay") >= DELAY_MINUTES).sum().alias("d"))
            .sort([*key, "flight_date"])
            .select(
                *key,
                pl.col("flight_date").alias("as_of"),
                pl.col("n").cum_sum().over(list(key)).alias("n"),
                pl.col("d").cum_sum().over(list(key)).alias("d"),
            )
            .sort("as_of")
        )
        stats = targets.select([*key, "flight_date"]).unique()
        for offset in sorted({1, *(w + 1 for w in WINDOWS)}):
            looked_up = stats.with_columns(
                (pl.col("flight_date") - pl.duration(days=offset)).alias("as_of")
            ).sort("as_of")
            looked_up = looked_up.join_asof(
                totals, on="as_of", by=list(key), strategy="backward", check_sortedness=False
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
        stats = stats.select(*key, "flight_date", *columns)
        result = result.join(stats, on=[*key, "flight_date"], how="left")
    return result


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
    targets = flights.filter(pl.col("flight_date").is_in(wanted) & pl.col("arr_delay").is_not_null())
    local = pl.col("sched_dep_utc").dt.convert_time_zone(NEW_YORK)
    base = targets.select(
        *KEY_COLUMNS,
        "dest",
        "tailnum",
        "distance",
        "sched_dep_utc",
        pl.col("flight_date").dt.month().cast(pl.Int32).alias("month"),
        pl.col("flight_date").dt.weekday().cast(pl.Int32).alias("weekday"),
        local.dt.hour().cast(pl.Int32).alias("dep_hour"),
        local.dt.minute().cast(pl.Int32).alias("dep_minute"),
        (pl.col("arr_delay") >= DELAY_MINUTES).alias(LABEL),
    )
    base = base.join(holiday_table(wanted.min(), wanted.max()), on="flight_date", how="left")
    plane_info = planes.select(
        "tailnum",
        pl.col("year").alias("plane_year"),
        pl.col("seats").cast(pl.Int32).alias("plane_seats"),
    )
    base = base.join(plane_info, on="tailnum", how="left").with_columns(
        (pl.col("flight_date").dt.year() - pl.col("plane_year")).cast(pl.Int32).alias("plane_age")
    )
    obs = weather.select("origin", pl.col("time_hour").alias("weather_time"), *WEATHER_COLUMNS).sort(
        "origin", "weather_time"
    )
    base = base.sort("origin", "sched_dep_utc").join_asof(
        obs,
        left_on="sched_dep_utc",
        right_on="weather_time",
        by="origin",
        strategy="backward",
        tolerance=WEATHER_TOLERANCE,
        check_sortedness=False,
    )
    base = base.with_columns(
        ((pl.col("sched_dep_utc") - pl.col("weather_time")).dt.total_minutes())
        .cast(pl.Int32)
        .alias("weather_age_minutes")
    )
    features = _trailing(flights.filter(pl.col("flight_date") < wanted.max()), base)
    return features.select([pl.col(c).cast(t) for c, t in FEATURE_SCHEMA.items()]).sort(list(KEY_COLUMNS))
