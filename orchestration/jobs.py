"""Asset jobs: what a schedule, a sensor or the demo asks to run."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from assets.freshness import freshness
from assets.selection import select

TRAINING_RUN_TAGS: Mapping[str, str] = {"platform/concurrency": "training"}
"""The run tag the instance's run queue limits to one run at a time (orchestration/instance/*.yaml)."""


def asset_job(
    name: str, description: str, *keys: str, tags: Mapping[str, str] | None = None
) -> dg.UnresolvedAssetJobDefinition:
    """A job of the assets with these keys and their checks, partitioned like them; `tags` go to its runs.

    The freshness checks are left out: they judge how long data waits for a run, which the
    freshness sensor reports on its own clock, not a step of the run that just wrote it.
    """
    selection = select(*keys) - dg.AssetSelection.checks(freshness)
    return dg.define_asset_job(name, selection=selection, description=description, tags=tags)


reference_job = asset_job(
    "reference_data",
    "Replace the reference tables from their landing files.",
    "bronze/planes",
    "bronze/airports",
    "bronze/airlines",
)
bronze_job = asset_job(
    "bronze_ingestion",
    "Bronze of one day or a range of days; the landing sensor's target (features follow by automation).",
    "bronze/flights",
    "bronze/weather",
)
daily_ingestion_job = asset_job(
    "daily_ingestion",
    "Bronze and features of one day or a range of days, in one run.",
    "bronze/flights",
    "bronze/weather",
    "features/flight_features",
)
training_job = asset_job(
    "train_evaluate_promote",
    "Snapshot the training set, train a candidate, evaluate it and promote it if the gate passes.",
    "training/training_set",
    "training/candidate_model",
    "training/evaluation",
    "deployment/champion_model",
    tags=TRAINING_RUN_TAGS,
)
online_snapshot_job = asset_job(
    "online_snapshot",
    "Publish what the model server adds to a request, as of the last feature day "
    "(automation does this after every features update).",
    "features/online_snapshot",
)
