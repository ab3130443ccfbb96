"""Settings of the automation: how the landing sensor batches, when retraining is due."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ml.lake.tables import DRIFT_SIGNALS_TABLE


class LandingWatch(dg.ConfigurableResource):
    """How the landing sensor waits for files and batches them into runs."""

    settle_seconds: float = Field(
        default=10.0, ge=0, description="A file must be unchanged this long (it may still be copied)."
    )
    max_days_per_run: int = Field(default=31, ge=1, description="Longest day range of one run.")


class RetrainPolicy(dg.ConfigurableResource):
    """When the retraining sensor asks for a new model (the weekly schedule retrains regardless)."""

    new_feature_days: int = Field(
        default=7,
        ge=0,
        description="Retrain once this many feature days follow the last training set (0: off).",
    )
    on_drift: bool = Field(
        default=True, description=f"Retrain on a new row in {DRIFT_SIGNALS_TABLE} (written by monitoring)."
    )
