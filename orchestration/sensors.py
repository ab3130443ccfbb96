"""Sensors: new landing files become bronze runs; retraining follows its stated policy."""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from assets.partitions import RUN_MEMORY, SPAN, range_tags
from assets.selection import select
from ml.ingest.watch import landing_runs, plan, read_cursor, write_cursor
from orchestration.jobs import daily_ingestion_job
from resources import LandingResource, LandingWatch

DATASETS = ("flights", "weather")
FEATURES = dg.AssetKey(["features", "flight_features"])


@dg.sensor(
    name="landing_sensor",
    job=daily_ingestion_job,
    minimum_interval_seconds=5,
    description="Each new or changed day file in the landing zone becomes a bronze run of its days; "
    "days whose flights and weather landed together get their features in the same run.",
)
def landing_sensor(
    context: dg.SensorEvaluationContext, landing: LandingResource, landing_watch: LandingWatch
) -> dg.SensorResult:
    zone = landing.zone()
    now = dt.datetime.now(dt.UTC)
    present = []
    newest = SPAN.last_day(now)
    for dataset in DATASETS:
        inventory = zone.scan(
            dataset, SPAN.first, SPAN.accepts_until(now), now=now, open_ended=SPAN.open_ended
        )
        for moved in inventory.quarantined:
            context.log.warning(f"quarantined {moved.source}: {moved.reason} -> {moved.destination}")
        early = [f for f in inventory.files if f.day > newest]
        if early:
            context.log.info(
                f"{early[0].uri}: its day has no partition until midnight in New York; it waits there"
            )
        present += [f for f in inventory.files if f.day <= newest]
    decided = plan(
        present,
        read_cursor(context.cursor),
        now,
        landing_watch.settle_seconds,
        min(landing_watch.max_days_per_run, RUN_MEMORY.days_per_run()),
    )
    for f in decided.changed:
        context.log.warning(f"{f.uri} changed since it was ingested: requesting {f.day} again")
    if decided.settling:
        context.log.info(
            f"{len(decided.settling)} file(s) still settling, next tick: {decided.settling[0].uri} ..."
        )
    for uri in decided.vanished:
        context.log.info(f"{uri} is no longer in the landing zone (moved to quarantine or removed)")
    cursor = {uri: sig for uri, sig in decided.cursor.items() if uri not in decided.vanished}
    requests = [
        dg.RunRequest(
            run_key=r.run_key,
            asset_selection=[
                *(dg.AssetKey(["bronze", dataset]) for dataset in r.datasets),
                *([FEATURES] if r.with_features else []),
            ],
            tags={
                **range_tags(r.first, r.last),
                "platform/trigger": "landing",
            },
        )
        for r in landing_runs(decided.ranges, DATASETS)
    ]
    return dg.SensorResult(run_requests=requests, cursor=write_cursor(cursor))


# The features' condition holds Python of its own (assets/conditions.py), which only the
# code server can evaluate; `use_user_code_server` is beta in Dagster 1.13 and warns so.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Parameter `use_user_code_server`", category=dg.BetaWarning)
    features_automation_sensor = dg.AutomationConditionSensorDefinition(
        "features_automation",
        target=select("features/flight_features", "features/online_snapshot"),
        minimum_interval_seconds=10,
        use_user_code_server=True,
        description="Evaluates the automation conditions of the features and the online snapshot every 10 s "
        "(Dagster's default sensor: 30 s).",
    )
