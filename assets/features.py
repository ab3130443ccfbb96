"""Features: point-in-time flight features, one Delta partition per day, built incrementally."""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from assets.ingestion import flights, planes, weather
from assets.metadata import commit_metadata, delta_metadata
from ml.features.flight_features import (
    FEATURE_SCHEMA,
    KEY_COLUMNS,
    LABEL,
    WEATHER_LOOKBACK_DAYS,
    build_features,
    lookback_days,
)
from ml.lake.quality import duplicate_keys, null_rates, rate_breaches, schema_problems
from ml.online.snapshot import build_snapshot, history_days, publish, weather_days
from orchestration.partitions import daily_partitions, days_label, partition_days
from orchestration.step_resources import FEATURES, k8s_step_tags
from resources import LakeResource

TABLE = "features/flight_features"
ASSET = dg.AssetKey.from_user_string(TABLE)
NULL_RATE_LIMITS = {
    **dict.fromkeys(KEY_COLUMNS, 0.0),
    "sched_dep_utc": 0.0,
    "dest": 0.0,
    "distance": 0.0,
    "temp": 0.05,
    "carrier_delay_rate_28d": 0.05,
    "plane_age": 0.25,
}
LABEL_RATE_BOUNDS = (0.02, 0.75)


def follows_bronze() -> dg.AutomationCondition:
    """A day's features follow its bronze: when a flights or weather day they read lands or changes.

    `eager()` without its latest-time-window clause, so replayed or late history days are
    built too; waits while any day of the window is missing or running. A refresh of the
    planes table alone does not rebuild the year.
    """
    updated = dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.keys("bronze/planes"))
    return (
        (dg.AutomationCondition.newly_missing() | updated).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("follows bronze")


def follows_features() -> dg.AutomationCondition:
    """The online snapshot follows the features: rebuilt after any day of them is written.

    Bronze updates alone do not trigger it (the features that follow them will), and it
    waits while a features run is in flight so that a backfill rebuilds it once, at the end.
    """
    bronze = dg.AssetSelection.keys("bronze/flights", "bronze/weather", "bronze/planes")
    return (
        dg.AutomationCondition.any_deps_updated().ignore(bronze).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("follows features")


def _window(days: int) -> dg.TimeWindowPartitionMapping:
    return dg.TimeWindowPartitionMapping(
        start_offset=-days, end_offset=0, allow_nonexistent_upstream_partitions=True
    )


@dg.asset(
    key=["features", "flight_features"],
    group_name="features",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=follows_bronze(),
    deps=[
        dg.AssetDep(flights, partition_mapping=_window(lookback_days())),
        dg.AssetDep(weather, partition_mapping=_window(WEATHER_LOOKBACK_DAYS)),
        planes,
    ],
    check_specs=[
        dg.AssetCheckSpec("schema", asset=ASSET, blocking=True, description="Columns and types are stable."),
        dg.AssetCheckSpec("key_unique", asset=ASSET, blocking=True, description="One row per flight."),
        dg.AssetCheckSpec("null_rates", asset=ASSET, description="Null rates of key columns within limits."),
        dg.AssetCheckSpec("label_rate", asset=ASSET, description="Share of delayed flights within bounds."),
    ],
    kinds={"delta", "polars"},
    op_tags=k8s_step_tags(FEATURES),
)
def flight_features(context: dg.AssetExecutionContext, lake: LakeResource):
    """One row per flight with a known outcome; reads its days plus a bounded trailing window of bronze."""
    days = partition_days(context)
    first, last = days[0], days[-1]
    store = lake.store()
    history = store.read_days(
        "bronze/flights", "flight_date", first - dt.timedelta(days=lookback_days()), last
    )
    observed = store.read_days(
        "bronze/weather", "obs_date", first - dt.timedelta(days=WEATHER_LOOKBACK_DAYS), last
    )
    frame = build_features(history, observed, store.read("bronze/planes"), days)
    result = store.replace_days(TABLE, frame, "flight_date", days, commit_metadata(context, days_label(days)))
    scheduled = history.filter(pl.col("flight_date").is_between(first, last)).height
    problems = schema_problems(dict(store.scan(TABLE, result.version).collect_schema()), FEATURE_SCHEMA)
    rates = null_rates(frame, NULL_RATE_LIMITS)
    breaches = rate_breaches(rates, NULL_RATE_LIMITS)
    label_rate = float(frame[LABEL].mean() or 0.0)
    low, high = LABEL_RATE_BOUNDS
    return dg.MaterializeResult(
        metadata=delta_metadata(
            result,
            frame,
            days=days_label(days),
            excluded_no_outcome=scheduled - frame.height,
            label_rate=label_rate,
        ),
        check_results=[
            dg.AssetCheckResult(check_name="schema", passed=not problems, metadata={"problems": problems}),
            dg.AssetCheckResult(
                check_name="key_unique",
                passed=duplicate_keys(frame, KEY_COLUMNS) == 0,
                metadata={"duplicates": duplicate_keys(frame, KEY_COLUMNS)},
            ),
            dg.AssetCheckResult(
                check_name="null_rates",
                passed=not breaches,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "rates": dg.MetadataValue.json(rates),
                    "breaches": dg.MetadataValue.json(breaches),
                },
            ),
            dg.AssetCheckResult(
                check_name="label_rate",
                passed=low <= label_rate <= high,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"label_rate": label_rate, "bounds": f"{low}..{high}"},
            ),
        ],
    )


class OnlineSnapshotConfig(dg.Config):
    servable_days: int = Field(
        default=92,
        ge=1,
        description="Flight days before the day after the last feature day that the server answers for.",
    )


@dg.asset(
    key=["features", "online_snapshot"],
    group_name="features",
    deps=[flight_features, flights, weather, planes],
    kinds={"parquet", "polars"},
    automation_condition=follows_features(),
)
def online_snapshot(
    context: dg.AssetExecutionContext, config: OnlineSnapshotConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """What the model server adds to a request: trailing totals, weather and planes up to the last feature day."""
    store = lake.store()
    last = store.scan(TABLE).select(pl.col("flight_date").max()).collect().item()
    if last is None:
        raise ValueError(f"{TABLE} has no rows: materialize features before the online snapshot")
    first = last + dt.timedelta(days=1) - dt.timedelta(days=config.servable_days - 1)
    sources = {t: store.version(t) for t in ("bronze/flights", "bronze/weather", "bronze/planes", TABLE)}
    snapshot = build_snapshot(
        store.read_days("bronze/flights", "flight_date", *history_days(first, last)),
        store.read_days("bronze/weather", "obs_date", *weather_days(first, last)),
        store.read("bronze/planes"),
        first,
        last,
        sources,
    )
    snapshot_id = publish(snapshot, lake.root, lake.storage_options or None)
    context.log.info(f"online snapshot {snapshot_id}: flights from {first}, data through {last}")
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": snapshot_id,
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            **{f"{name}_rows": rows for name, rows in snapshot.manifest()["rows"].items()},
            "source_versions": dg.MetadataValue.json(sources),
        },
        data_version=dg.DataVersion(snapshot_id),
    )
