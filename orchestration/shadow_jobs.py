"""The shadow verdict: promote or reject the challenger served in shadow, on the flights' outcomes.

The job reads the prediction log from the day the shadow started, pairs its answers with
the champion's on the flights that landed (`ml.monitoring.shadow`) and applies the
`promotion:` policy of params.yaml: wait, promote (the shadow passed its offline gate
and is non-inferior live) or reject. Every run records the comparison as an observation
of `deployment/champion_model`, and a promotion as its materialization, so the asset's
page shows the evidence either way.
"""

import datetime as dt

import dagster as dg

from assets.deployment import CHAMPION_KEY, champion_metadata
from ml.monitoring.shadow import ShadowPolicy, current_comparison, shadow_decision
from ml.registry.dvc_repo import PARAMS_FILE
from ml.registry.model_registry import ModelRegistry
from ml.training.params import load_params
from orchestration.schedules import stopped_schedule
from resources import ArtifactsResource, DvcResource, LakeResource


@dg.op(description="Promote or reject the shadow challenger by its live comparison with the champion.")
def judge_shadow(
    context: dg.OpExecutionContext, lake: LakeResource, artifacts: ArtifactsResource, dvc: DvcResource
) -> str:
    registry = ModelRegistry(lake.store(), artifacts.root, context.run.run_id)
    shadow, champion = registry.shadow(), registry.champion()
    if shadow is None or champion is None:
        context.log.info("no challenger in shadow (or no champion): nothing to judge")
        return "none"
    policy = ShadowPolicy.from_params(load_params(dvc.path(PARAMS_FILE)))
    comparison = current_comparison(registry, policy)
    assert comparison is not None  # a shadow and a champion, as just read
    action, reason = shadow_decision(comparison, policy)
    context.log.info(f"{action}: {reason}")
    summary = {**comparison.summary(), "action": action, "reason": reason}
    context.log_event(
        dg.AssetObservation(
            asset_key=CHAMPION_KEY, description=reason, metadata={"shadow": dg.MetadataValue.json(summary)}
        )
    )
    now = dt.datetime.now(dt.UTC)
    if action == "promote":
        previous = registry.promote_passed(shadow.version, reason, now=now)
        context.log_event(
            dg.AssetMaterialization(
                asset_key=CHAMPION_KEY,
                description=f"v{shadow.version} promoted from shadow",
                metadata=champion_metadata(
                    registry.get(shadow.version),
                    previous.version if previous else None,
                    reason,
                    "shadow",
                    registry.frozen() is not None,
                ),
            )
        )
    elif action == "reject":
        registry.reject(shadow.version, reason, now=now)
    return action


@dg.job(
    description="Judge the challenger served in shadow: promote, reject or wait (params.yaml promotion:)."
)
def shadow_verdict() -> None:
    judge_shadow()


shadow_verdict_schedule = stopped_schedule(
    "daily_shadow_verdict",
    shadow_verdict,
    "30 7 * * *",
    "The shadow verdict every morning at 07:30 New York time, after the day's outcomes landed.",
)
