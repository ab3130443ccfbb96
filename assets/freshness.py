"""Freshness of bronze and the features: one `freshness` check each, reported by the freshness sensor.

A check fails (severity ERROR, so it alerts) when a day that reached the asset's upstream
has waited longer than the configured lag: a landing file not yet in bronze, a bronze day
without its features. See `ml/monitoring/freshness.py` for why the clock is the platform's,
not the calendar's.
"""

import datetime as dt
import zoneinfo

import dagster as dg
import polars as pl

from assets.bronze import flights, weather
from assets.features import flight_features
from assets.partitions import SPAN
from ml.ingest.landing_zone import LandingZone
from ml.lake.delta import DeltaStore
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_WEATHER, FEATURES_TABLE, landing_log_table
from ml.monitoring.freshness import Freshness, FreshnessLimits, judge
from ml.settings import NEW_YORK
from resources import FreshnessPolicy, LakeResource, LandingResource

CHECK = "freshness"
BRONZE = {flights.key: (BRONZE_FLIGHTS, "flights"), weather.key: (BRONZE_WEATHER, "weather")}
MAX_LOOKUPS = 20
"""Bronze days without features whose arrival is looked up per check (the newest ones)."""


def _today(now: dt.datetime) -> dt.date:
    return now.astimezone(zoneinfo.ZoneInfo(NEW_YORK)).date()


def _days(store: DeltaStore, table: str, column: str) -> set[dt.date]:
    if not store.exists(table):
        return set()
    return set(store.scan(table).select(pl.col(column).unique()).collect().to_series())


def bronze_freshness(
    store: DeltaStore, zone: LandingZone, table: str, dataset: str, now: dt.datetime, limits: FreshnessLimits
) -> Freshness:
    """Landing files whose day is not in the table, waiting since the file was written."""
    landed = _days(store, landing_log_table(table), "day")
    arrived = {
        f.day: f.modified or now
        for f in zone.day_files(dataset, SPAN.first, SPAN.last_day(now))
        if f.day not in landed
    }
    return judge(max(landed, default=None), arrived, now, _today(now), limits)


def features_freshness(
    store: DeltaStore, instance: dg.DagsterInstance, now: dt.datetime, limits: FreshnessLimits
) -> Freshness:
    """Bronze days (flights and weather landed) without features, waiting since bronze got them."""
    bronze = _days(store, landing_log_table(BRONZE_FLIGHTS), "day") & _days(
        store, landing_log_table(BRONZE_WEATHER), "day"
    )
    built = _days(store, FEATURES_TABLE, "flight_date")
    arrived: dict[dt.date, dt.datetime] = {}
    for day in sorted(bronze - built)[-MAX_LOOKUPS:]:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=flights.key, asset_partitions=[day.isoformat()]), limit=1
        ).records
        arrived[day] = dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC) if records else now
    return judge(max(built, default=None), arrived, now, _today(now), limits)


def _metadata(freshness: Freshness) -> dict[str, object]:
    return {
        "newest_day": str(freshness.newest_day),
        "waiting_days": len(freshness.waiting),
        "stale": dg.MetadataValue.json({str(d): round(s, 1) for d, s in sorted(freshness.stale.items())}),
        "oldest_wait_seconds": round(max(freshness.waiting.values(), default=0.0), 1),
        "lag_seconds": freshness.limits.lag.total_seconds(),
        "max_age_days": freshness.limits.max_age_days,
        "explanation": freshness.explanation(),
    }


def judge_all(
    store: DeltaStore,
    zone: LandingZone,
    instance: dg.DagsterInstance,
    policy: FreshnessPolicy,
    keys: list[dg.AssetKey],
) -> dict[dg.AssetKey, Freshness]:
    """The freshness of each asset of `keys` now, as the check and the freshness sensor report it."""
    now = dt.datetime.now(dt.UTC)
    limits = FreshnessLimits(dt.timedelta(seconds=policy.lag_seconds), policy.max_age_days)
    judged = {}
    for key in keys:
        if key in BRONZE:
            table, dataset = BRONZE[key]
            judged[key] = bronze_freshness(store, zone, table, dataset, now, limits)
        else:
            judged[key] = features_freshness(store, instance, now, limits)
    return judged


def _verdict(key: dg.AssetKey, freshness: Freshness) -> dict[str, object]:
    """What the check's result says, whether a run or the sensor reports it."""
    return {
        "asset_key": key,
        "check_name": CHECK,
        "passed": freshness.passed,
        "severity": dg.AssetCheckSeverity.ERROR,
        "description": freshness.explanation(),
        "metadata": _metadata(freshness),
    }


def evaluation(key: dg.AssetKey, freshness: Freshness) -> dg.AssetCheckEvaluation:
    """The check's result as an event, for the freshness sensor to report without a run."""
    return dg.AssetCheckEvaluation(**_verdict(key, freshness))  # type: ignore[arg-type]


CHECKED = [*BRONZE, flight_features.key]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CHECK,
            asset=key,
            description="No day that reached the upstream has waited longer than the configured lag "
            "(reported by the freshness sensor; executing it here runs the same judgement).",
        )
        for key in CHECKED
    ],
    can_subset=True,
)
def freshness(
    context: dg.AssetCheckExecutionContext,
    lake: LakeResource,
    landing: LandingResource,
    freshness_policy: FreshnessPolicy,
):
    keys = sorted({k.asset_key for k in context.selected_asset_check_keys}, key=lambda k: k.to_user_string())
    judged = judge_all(lake.store(), landing.zone(), context.instance, freshness_policy, keys)
    for key, fresh in judged.items():
        yield dg.AssetCheckResult(**_verdict(key, fresh))  # type: ignore[arg-type]
