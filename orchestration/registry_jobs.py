"""Registry operations as jobs: rollback to an earlier model version from the UI or a schedule."""

import datetime as dt

import dagster as dg
from pydantic import Field

from ml.registry.model_registry import ModelRegistry
from resources import LakeResource


class RollbackConfig(dg.Config):
    version: int = Field(description="Registered version to make the champion again.")
    reason: str = Field(default="rollback", description="Why; kept in registry/events.")


@dg.op(description="Make an earlier registered version the champion; the current one is archived.")
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, lake: LakeResource) -> None:
    previous = ModelRegistry(lake.store()).rollback(
        config.version, config.reason, now=dt.datetime.now(dt.UTC)
    )
    context.log.info(
        f"v{config.version} is the champion" + (f"; v{previous.version} archived" if previous else "")
    )


@dg.job(description="Roll the champion back to an earlier registered version (config: version, reason).")
def rollback() -> None:
    rollback_champion()
