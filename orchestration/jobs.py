"""Asset jobs: what a schedule, a sensor or the demo asks to run."""

from __future__ import annotations

import dagster as dg

from orchestration.partitions import daily_partitions

reference_job = dg.define_asset_job(
    "reference_data",
    selection=dg.AssetSelection.keys("bronze/planes", "bronze/airports", "bronze/airlines"),
    description="Replace the reference tables from their landing files.",
)

bronze_job = dg.define_asset_job(
    "bronze_ingestion",
    selection=dg.AssetSelection.keys("bronze/flights", "bronze/weather"),
    partitions_def=daily_partitions,
    description="Bronze of one day or a range of days; the landing sensor's target (features follow by automation).",
)

daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion",
    selection=dg.AssetSelection.keys("bronze/flights", "bronze/weather", "features/flight_features"),
    partitions_def=daily_partitions,
    description="Bronze and features of one day or a range of days, in one run.",
)

training_job = dg.define_asset_job(
    "train_evaluate_promote",
    selection=dg.AssetSelection.keys(
        "training/training_set",
        "training/candidate_model",
        "training/evaluation",
        "deployment/champion_model",
    ),
    description="Snapshot the training set, train a candidate, evaluate it and promote it if the gate passes.",
)

online_snapshot_job = dg.define_asset_job(
    "online_snapshot",
    selection=dg.AssetSelection.keys("features/online_snapshot"),
    description="Publish what the model server adds to a request, as of the last feature day "
    "(automation does this after every features update).",
)
