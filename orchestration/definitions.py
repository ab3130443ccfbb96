"""The code location: assembles assets, checks, jobs, schedules and resources."""

from __future__ import annotations

import os

import dagster as dg

from assets import deployment, evaluation, features, ingestion, lineage, training
from orchestration.jobs import daily_ingestion_job, reference_job, training_job
from orchestration.maintenance import maintenance, maintenance_schedule
from orchestration.profiles import build_resources
from orchestration.registry_jobs import rollback


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([ingestion, features, training, evaluation, deployment]),
        asset_checks=[lineage.registered_versions_recoverable],
        jobs=[reference_job, daily_ingestion_job, training_job, maintenance, rollback],
        schedules=[maintenance_schedule],
        resources=build_resources(os.environ),
    )


defs = build_definitions()
