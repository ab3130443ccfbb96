"""Deployment: the champion in the registry, promoted only through a passed gate."""

import datetime as dt

import dagster as dg

from assets.training import evaluation
from ml.registry.model_registry import ModelRegistry, RegistryError
from resources import LakeResource


@dg.asset(key=["deployment", "champion_model"], group_name="deployment", deps=[evaluation], kinds={"delta"})
def champion_model(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Promotes the evaluated candidate; the evaluation's blocking checks keep a failed one from getting here."""
    registry = ModelRegistry(lake.store())
    candidate = registry.latest("candidate")
    if candidate is None:
        raise RegistryError("no candidate awaits promotion (the last one was rejected or already promoted)")
    gate = candidate.metrics.get("gate", {})
    if not gate.get("passed"):
        raise RegistryError(
            f"candidate v{candidate.version} has no passed evaluation: {gate or 'not evaluated'}"
        )
    previous = registry.promote(
        candidate.version, f"gate passed: {gate['beats_champion']}", now=dt.datetime.now(dt.UTC)
    )
    context.log.info(
        f"v{candidate.version} is the champion" + (f"; v{previous.version} archived" if previous else "")
    )
    return dg.MaterializeResult(
        metadata={
            "champion_version": candidate.version,
            "previous_champion": previous.version if previous else None,
            "onnx_uri": candidate.onnx_uri,
            "roc_auc": candidate.metrics.get("test", {}).get("roc_auc"),
        }
    )
