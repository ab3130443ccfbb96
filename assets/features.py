"""Features: point-in-time flight features, one Delta partition per day, built incrementally."""

import dataclasses
import datetime as dt
from dataclasses import dataclass

import dagster as dg
import polars as pl
from pydantic import Field

from assets.bronze import flights, planes, weather
from assets.conditions import SameDayMaterialized
from assets.metadata import commit_metadata, delta_metadata, schema_definition
from assets.partitions import (
    FIRST_DAY,
    backfill_policy,
    daily_partitions,
    days_label,
    partition_days,
    run_slices,
)
from assets.selection import select
from assets.step_resources import FEATURES, k8s_step_tags
from ml.features.build import FeatureQuality, build_feature_days, measure_quality
from ml.features.flight_features import FEATURE_SCHEMA, WEATHER_LOOKBACK_DAYS, lookback_days
from ml.lake.delta import VACUUM_RETENTION_HOURS, DeltaStore, WriteResult
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER, FEATURES_TABLE
from ml.lineage.ledger import features_entry
from ml.online.build import online_snapshot_from_lake
from ml.online.snapshot import publish
from ml.registry.model_registry import ModelRegistry
from resources import LakeResource

ASSET = dg.AssetKey.from_user_string(FEATURES_TABLE)


def follows_bronze() -> dg.AutomationCondition:
    """A day's features follow its bronze: when a flights or weather day they read lands or changes.

    `eager()` without its latest-time-window clause, so replayed or late history days are
    built too, and without its wait for every day of the window: a day is built once its
    own flights and weather have landed, from the window's days that are present (the
    `window_complete` check names the gaps), and rebuilt when a missing day lands, since
    that day's update reaches every day whose window holds it. Waits while bronze is
    running. A refresh of the planes table alone does not rebuild the year.
    """
    updated = dg.AutomationCondition.any_deps_updated().ignore(select(BRONZE_PLANES))
    return (
        (dg.AutomationCondition.newly_missing() | updated).since_last_handled()
        & SameDayMaterialized(flights.key)
        & SameDayMaterialized(weather.key)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("follows bronze")


def follows_features() -> dg.AutomationCondition:
    """The online snapshot follows the features: rebuilt after any day of them is written.

    Bronze updates alone do not trigger it (the features that follow them will), and it
    waits while a features run is in flight so that a backfill rebuilds it once, at the end.
    """
    bronze = select(BRONZE_FLIGHTS, BRONZE_WEATHER, BRONZE_PLANES)
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
    key=ASSET,
    group_name="features",
    partitions_def=daily_partitions,
    backfill_policy=backfill_policy(),
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
        dg.AssetCheckSpec(
            "label_rate", asset=ASSET, description="Share of delayed flights within bounds, on every day."
        ),
        dg.AssetCheckSpec(
            "window_complete",
            asset=ASSET,
            description="Every bronze day the trailing windows read has landed (a gap is named; the days "
            "are rebuilt when it lands).",
        ),
    ],
    kinds={"delta", "polars"},
    metadata=schema_definition(FEATURE_SCHEMA),
    op_tags=k8s_step_tags(FEATURES),
)
def flight_features(context: dg.AssetExecutionContext, lake: LakeResource):
    """One row per flight with a known outcome; reads its days plus a bounded trailing window of bronze.

    The run's days are built and written in slices under its memory budget (`run_slices`):
    a slice's window and rows are let go before the next slice is read.
    """
    days = partition_days(context)
    store = lake.store()
    parts = [_build_slice(context, store, part, single=len(days) == 1) for part in run_slices(days)]
    missing: dict[str, list[str]] = {}
    for part in parts:
        for table, gaps in part.missing_window_days.items():
            missing[table] = sorted({*missing.get(table, []), *gaps})
    if missing:
        context.log.warning(f"built without days that have not landed: {missing}")
    quality = FeatureQuality.combine([part.quality for part in parts])
    last = parts[-1]
    return dg.MaterializeResult(
        metadata=delta_metadata(
            dataclasses.replace(last.result, rows=sum(part.result.rows for part in parts)),
            last.preview,
            partitions=len(days),
            days=days_label(days),
            excluded_no_outcome=sum(part.excluded_no_outcome for part in parts),
            label_rate=quality.label_rate,
            missing_window_days=dg.MetadataValue.json(missing),
            bronze_versions_read=dg.MetadataValue.json(last.sources),
            **({"slices": len(parts)} if len(parts) > 1 else {}),
        ),
        check_results=[*_feature_checks(quality), _window_check(missing)],
    )


@dataclass(frozen=True)
class _FeatureSlice:
    """What one slice of a run's days wrote: small, so a run holds one slice's rows at a time."""

    result: WriteResult
    quality: FeatureQuality
    excluded_no_outcome: int
    missing_window_days: dict[str, list[str]]
    sources: dict[str, int]
    preview: pl.DataFrame
    """The slice's rows when the run is one day (the materialization's preview), else none."""


def _build_slice(
    context: dg.AssetExecutionContext, store: DeltaStore, days: list[dt.date], single: bool
) -> _FeatureSlice:
    built = build_feature_days(store, days, earliest=FIRST_DAY)
    meta = {**commit_metadata(context, days_label(days)), **features_entry(days, built.sources)}
    result = store.replace_days(FEATURES_TABLE, built.frame, "flight_date", days, meta)
    quality = measure_quality(built.frame, dict(store.scan(FEATURES_TABLE, result.version).collect_schema()))
    preview = built.frame if single else built.frame.head(0)
    return _FeatureSlice(
        result, quality, built.excluded_no_outcome, built.missing_window_days, built.sources, preview
    )


def _window_check(missing: dict[str, list[str]]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="window_complete",
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "missing_days": dg.MetadataValue.json(missing),
            "missing": ", ".join(f"{table}: {' '.join(days)}" for table, days in missing.items()) or "none",
        },
    )


def _feature_checks(quality: FeatureQuality) -> list[dg.AssetCheckResult]:
    low, high = quality.label_rate_bounds
    return [
        dg.AssetCheckResult(
            check_name="schema",
            passed=not quality.schema_problems,
            metadata={"problems": quality.schema_problems},
        ),
        dg.AssetCheckResult(
            check_name="key_unique",
            passed=quality.duplicates == 0,
            metadata={"duplicates": quality.duplicates},
        ),
        dg.AssetCheckResult(
            check_name="null_rates",
            passed=not quality.null_rate_breaches,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "rates": dg.MetadataValue.json(quality.null_rates),
                "breaches": dg.MetadataValue.json(quality.null_rate_breaches),
            },
        ),
        dg.AssetCheckResult(
            check_name="label_rate",
            passed=quality.label_rate_within_bounds,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "label_rate": quality.label_rate,
                "bounds": f"{low}..{high}",
                "days_out_of_bounds": dg.MetadataValue.json(quality.label_rate_breaches),
                "per_day": dg.MetadataValue.json(quality.label_rates),
            },
        ),
    ]


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
    snapshot = online_snapshot_from_lake(lake.store(), config.servable_days)
    first, last = snapshot.first_day, snapshot.last_day
    snapshot_id = publish(snapshot, lake.root, lake.storage_options or None)
    context.log.info(f"online snapshot {snapshot_id}: flights from {first}, data through {last}")
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": snapshot_id,
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            **{f"{name}_rows": rows for name, rows in snapshot.manifest()["rows"].items()},
            "source_versions": dg.MetadataValue.json(snapshot.sources),
        },
        data_version=dg.DataVersion(snapshot_id),
    )


@dg.asset_check(
    asset=flight_features,
    blocking=True,
    description="Every feature-table version a registered model read can still be read whole, and the "
    "maintenance job's vacuum (default retention) would delete none of its files.",
)
def registered_versions_recoverable(lake: LakeResource) -> dg.AssetCheckResult:
    store = lake.store()
    needed = sorted(ModelRegistry(store).needed_versions().get(FEATURES_TABLE, set()))
    if not needed or not store.exists(FEATURES_TABLE):
        return dg.AssetCheckResult(passed=True, metadata={"registered_versions": needed})
    gone = store.unrecoverable_versions(FEATURES_TABLE, needed)
    endangered = store.endangered_versions(FEATURES_TABLE, VACUUM_RETENTION_HOURS, needed)
    return dg.AssetCheckResult(
        passed=not gone and not endangered,
        metadata={
            "registered_versions": needed,
            "unrecoverable": dg.MetadataValue.json({str(k): v for k, v in gone.items()}),
            "endangered_by_vacuum": dg.MetadataValue.json({str(k): v for k, v in endangered.items()}),
        },
    )
