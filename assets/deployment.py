"""Deployment: the champion in the registry, promoted only through a passed gate.

Every change of champion (this asset, the rollback job, the CLI as seen by the
`champion_sync` sensor) is a materialization of `deployment/champion_model` with the same
metadata, so the asset's page shows the model being served.
"""

import datetime as dt
from typing import Any

import dagster as dg

from assets.run_models import run_candidate_version
from assets.training import evaluation
from ml.monitoring.shadow import ShadowPolicy
from ml.registry.candidates import candidate_of_run
from ml.registry.dvc_repo import PARAMS_FILE
from ml.registry.model_registry import ModelRegistry, ModelVersion
from ml.training.params import load_params
from resources import ArtifactsResource, DvcResource, LakeResource

CHAMPION_KEY = dg.AssetKey(["deployment", "champion_model"])


def champion_metadata(
    champion: ModelVersion, previous: int | None, reason: str, trigger: str, frozen: bool
) -> dict[str, Any]:
    """What a materialization of deployment/champion_model says, whoever changed the champion."""
    return {
        "champion_version": champion.version,
        "previous_champion": previous,
        "reason": reason,
        "trigger": trigger,
        "model_md5": champion.model_md5,
        "training_set_md5": champion.training_set_md5,
        "roc_auc": champion.metrics.get("test", {}).get("roc_auc"),
        "promotions_frozen": frozen,
    }


@dg.asset(key=CHAMPION_KEY, group_name="deployment", deps=[evaluation], kinds={"delta"})
def champion_model(
    context: dg.AssetExecutionContext, lake: LakeResource, artifacts: ArtifactsResource, dvc: DvcResource
) -> dg.MaterializeResult:
    """Promotes the candidate its run evaluated, or serves it in shadow first (`promotion:` in params.yaml).

    The evaluation's blocking checks keep a failed candidate from getting here; the registry
    refuses one without a passed gate anyway. A freeze fails this step and leaves the
    candidate a candidate, to promote from the CLI once unfrozen. With `shadow_days` set and
    a champion serving, the candidate becomes the shadow instead, and the `shadow_verdict`
    job promotes or rejects it on live outcomes.
    """
    registry = ModelRegistry(lake.store(), artifacts.root, context.run.run_id)
    version = run_candidate_version(context)
    candidate = candidate_of_run(registry, version)
    if version is None:
        context.log.warning(
            f"this run trained no candidate_model; promoting the newest candidate v{candidate.version}"
        )
    now = dt.datetime.now(dt.UTC)
    policy = ShadowPolicy.from_params(load_params(dvc.path(PARAMS_FILE)))
    champion = registry.champion()
    if policy.requires_shadow and champion is not None:
        replaced = registry.start_shadow(candidate.version, "passed its gate: serving in shadow", now=now)
        context.log.info(
            f"v{candidate.version} serves in shadow beside champion v{champion.version} for "
            f"{policy.shadow_days} day(s) of outcomes"
            + (f"; v{replaced.version} superseded" if replaced else "")
        )
        metadata = champion_metadata(champion, None, "unchanged", "shadow", registry.frozen() is not None)
        return dg.MaterializeResult(
            metadata={**metadata, "shadow_version": candidate.version, "shadow_days": policy.shadow_days}
        )
    reason = f"gate passed: {(candidate.metrics.get('gate') or {}).get('beats_champion')}"
    previous = registry.promote_passed(candidate.version, reason, now=now)
    context.log.info(
        f"v{candidate.version} is the champion" + (f"; v{previous.version} archived" if previous else "")
    )
    return dg.MaterializeResult(
        metadata=champion_metadata(
            candidate, previous.version if previous else None, reason, "gate", registry.frozen() is not None
        )
    )
