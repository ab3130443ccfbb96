"""The freshness sensor: judges the freshness checks every minute and reports them without a run.

A run per judgement would cost a process start (seconds of CPU) every minute for a few
table listings; the sensor reports the checks' results as events of its tick instead, so
they show on the assets in the UI and a failure reaches the check alerts like any other.
`freshness_checks` runs the same checks as a job, for the UI's "execute" and for tests.
"""

from __future__ import annotations

import dagster as dg

from assets.freshness import CHECKED, evaluation, freshness, judge_all
from resources import FreshnessPolicy, LakeResource, LandingResource

DEFAULT_INTERVAL_SECONDS = 60

freshness_job = dg.define_asset_job(
    "freshness_checks",
    selection=dg.AssetSelection.checks(freshness),
    description="Run the freshness checks of bronze and the features (a failure alerts).",
    tags={"platform/trigger": "freshness"},
)


def freshness_sensor(interval_seconds: int = DEFAULT_INTERVAL_SECONDS) -> dg.SensorDefinition:
    """Judges freshness every `interval_seconds`; on by default, like the alerts it feeds."""

    @dg.sensor(
        name="freshness_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Reports the freshness checks of bronze and the features every {interval_seconds} s.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        lake: LakeResource,
        landing: LandingResource,
        freshness_policy: FreshnessPolicy,
    ) -> dg.SensorResult:
        judged = judge_all(lake.store(), landing.zone(), context.instance, freshness_policy, CHECKED)
        for key, fresh in judged.items():
            if not fresh.passed:
                context.log.warning(f"{key.to_user_string()} is stale: {fresh.explanation()}")
        return dg.SensorResult(asset_events=[evaluation(key, fresh) for key, fresh in judged.items()])

    return _sensor
