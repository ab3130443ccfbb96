"""Settings of the automation: how the landing sensor batches, when retraining is due, how fresh is fresh."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ml.lake.tables import DRIFT_SIGNALS_TABLE


class LandingWatch(dg.ConfigurableResource):
    """How the landing sensor waits for files and batches them into runs."""

    settle_seconds: float = Field(
        default=3.0,
        ge=0,
        description="A file must be unchanged this long (it may still be copied; a file moved into "
        "place or put to an object store is whole at once).",
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


class FreshnessPolicy(dg.ConfigurableResource):
    """How stale bronze and the features may get before their `freshness` checks fail (and alert)."""

    lag_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="A day that reached the table's upstream may wait this long for the table.",
    )
    max_age_days: int = Field(
        default=0,
        ge=0,
        description="The newest day may be at most this many days before today (0: off, for replays).",
    )
