"""Lineage guard: the Delta versions registered models were trained from stay readable."""

import dagster as dg

from assets.features import flight_features
from ml.registry.model_registry import ModelRegistry
from orchestration.maintenance import MaintenanceConfig
from resources import LakeResource


@dg.asset_check(
    asset=flight_features,
    blocking=True,
    description="Every feature-table version a registered model read can still be read whole, and the "
    "maintenance job's vacuum (default retention) would delete none of its files.",
)
def registered_versions_recoverable(lake: LakeResource) -> dg.AssetCheckResult:
    store = lake.store()
    table = flight_features.key.to_user_string()
    needed = sorted(ModelRegistry(store).needed_versions().get(table, set()))
    if not needed or not store.exists(table):
        return dg.AssetCheckResult(passed=True, metadata={"registered_versions": needed})
    gone = store.unrecoverable_versions(table, needed)
    endangered = store.endangered_versions(table, MaintenanceConfig().retention_hours, needed)
    return dg.AssetCheckResult(
        passed=not gone and not endangered,
        metadata={
            "registered_versions": needed,
            "unrecoverable": dg.MetadataValue.json({str(k): v for k, v in gone.items()}),
            "endangered_by_vacuum": dg.MetadataValue.json({str(k): v for k, v in endangered.items()}),
        },
    )
