"""Registry operations: rollback as a job, and a sensor that shows changes made outside a run.

Both record a materialization of `deployment/champion_model` with the asset's own metadata,
so its page always names the model being served.
"""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.deployment import CHAMPION_KEY, champion_metadata
from ml.registry.model_registry import ModelRegistry
from resources import ArtifactsResource, LakeResource

OUTSIDE_A_RUN = "registry change outside a run"


class RollbackConfig(dg.Config):
    version: int = Field(description="Registered version to make the champion again.")
    reason: str = Field(default="rollback", description="Why; kept in registry/events.")


@dg.op(
    description="Make an earlier version the champion (one that passed its gate or served before); "
    "the current one is archived. Allowed while promotions are frozen."
)
def rollback_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, lake: LakeResource, artifacts: ArtifactsResource
) -> None:
    registry = ModelRegistry(lake.store(), artifacts.root, context.run.run_id)
    previous = registry.rollback(config.version, config.reason, now=dt.datetime.now(dt.UTC))
    context.log.info(
        f"v{config.version} is the champion" + (f"; v{previous.version} archived" if previous else "")
    )
    context.log_event(
        dg.AssetMaterialization(
            asset_key=CHAMPION_KEY,
            description=f"rolled back to v{config.version}",
            metadata=champion_metadata(
                registry.get(config.version),
                previous.version if previous else None,
                config.reason,
                "rollback",
                registry.frozen() is not None,
            ),
        )
    )


@dg.job(description="Roll the champion back to an earlier registered version (config: version, reason).")
def rollback() -> None:
    rollback_champion()


def _recorded_champion(entry: dg.EventLogEntry | None) -> int | None:
    materialization = entry.asset_materialization if entry else None
    value = materialization.metadata.get("champion_version") if materialization else None
    return value.value if isinstance(value, dg.IntMetadataValue) else None


def _recorded_freeze(instance: dg.DagsterInstance) -> bool | None:
    """`promotions_frozen` of the newest event (materialization or observation) of the champion asset."""
    entries = [instance.get_latest_materialization_event(CHAMPION_KEY)]
    observed = instance.fetch_observations(CHAMPION_KEY, limit=1).records
    entries += [observed[0].event_log_entry] if observed else []
    present = [e for e in entries if e is not None]
    if not present:
        return None
    newest = max(present, key=lambda e: e.timestamp)
    event = newest.asset_materialization or newest.asset_observation
    value = event.metadata.get("promotions_frozen") if event else None
    return value.value if isinstance(value, dg.BoolMetadataValue) else None


@dg.sensor(
    name="champion_sync",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records a materialization of deployment/champion_model when the registry's champion "
    "changed outside a run (python -m ml.registry.cli promote or rollback), and an observation when "
    "promotions were frozen or unfrozen.",
)
def champion_sync(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult | dg.SkipReason:
    registry = ModelRegistry(lake.store())
    champion = registry.champion()
    recorded = _recorded_champion(context.instance.get_latest_materialization_event(CHAMPION_KEY))
    freeze = registry.frozen()
    if champion is not None and champion.version != recorded:
        reason = registry.last_reason(champion.version)
        context.log.info(f"champion changed outside a run: v{recorded} -> v{champion.version} ({reason})")
        event = dg.AssetMaterialization(
            asset_key=CHAMPION_KEY,
            description=f"v{champion.version} became champion outside a run: {reason}",
            metadata=champion_metadata(champion, recorded, reason, OUTSIDE_A_RUN, freeze is not None),
        )
        return dg.SensorResult(asset_events=[event])
    if _recorded_freeze(context.instance) not in (None, freeze is not None):
        state = freeze.describe() if freeze else "promotions allowed again"
        observation = dg.AssetObservation(
            asset_key=CHAMPION_KEY,
            description=state,
            metadata={"promotions_frozen": freeze is not None, "freeze": state},
        )
        return dg.SensorResult(asset_events=[observation])
    if champion is None:
        return dg.SkipReason("the registry has no champion")
    return dg.SkipReason(f"deployment/champion_model shows the registry's champion v{recorded}")
