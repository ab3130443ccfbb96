"""Asset jobs: what a schedule, a sensor or the demo asks to run."""

from __future__ import annotations

import dagster as dg

from assets.selection import select


def asset_job(name: str, description: str, *keys: str) -> dg.UnresolvedAssetJobDefinition:
    """A job of the assets with these keys; partitioned like them."""
    return dg.define_asset_job(name, selection=select(*keys), description=description)


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
)
online_snapshot_job = asset_job(
    "online_snapshot",
    "Publish what the model server adds to a request, as of the last feature day "
    "(automation does this after every features update).",
    "features/online_snapshot",
)
