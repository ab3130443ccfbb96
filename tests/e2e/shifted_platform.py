"""The platform on 2013 replayed into 2026: landing -> bronze -> features -> a trained, evaluated model.

    PLATFORM_FIRST_DAY=2026-01-01 python -m tests.e2e.shifted_platform ROOT FIRST LAST SHIFT

Run in a subprocess by tests/e2e/test_shifted_replay.py, because the partitions are read
from the environment when the assets load. Replays the source shifted by SHIFT days into
ROOT/landing (FIRST..LAST are days of the shifted calendar, two days of trailing window
before FIRST included), ingests and builds FIRST..LAST through the real assets, trains,
evaluates and promotes through the local launcher. Writes the features it built to
ROOT/features.parquet and prints one JSON line of what the test checks.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import dagster as dg

from assets.partitions import SPAN, daily_partitions
from ml.ingest.replay import replay
from tests.conftest import (
    ASSETS,
    FAST_TRAINING,
    SMALL_PLATFORM,
    TrainingPlatform,
    make_dvc_repo,
    set_training,
)

CHAIN = [
    "training/training_set",
    "training/candidate_model",
    "training/evaluation",
    "deployment/champion_model",
]


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    first, last, shift = dt.date.fromisoformat(argv[1]), dt.date.fromisoformat(argv[2]), int(argv[3])
    replay(root / "landing", first - dt.timedelta(days=2), last, shift_days=shift)
    make_dvc_repo(root, SMALL_PLATFORM)
    platform = TrainingPlatform(root)
    platform.reference()
    set_training(platform, FAST_TRAINING)
    bronze = platform.bronze(first, last)
    features = platform.features(first, last)
    chain = dg.materialize(ASSETS, selection=CHAIN, resources=platform.resources, raise_on_error=False)
    platform.store.read("features/flight_features").write_parquet(root / "features.parquet")
    champion = platform.registry.champion()
    bronze_days = platform.store.read("bronze/flights")["flight_date"].unique().sort()
    out = {
        "span": [str(SPAN.first), str(SPAN.last)],
        "first_partition": daily_partitions.get_first_partition_key(),
        "bronze_success": bronze.success,
        "features_success": features.success,
        "chain_success": chain.success,
        "bronze_days": [str(bronze_days.min()), str(bronze_days.max()), bronze_days.len()],
        "champion": None
        if champion is None
        else {
            "version": champion.version,
            "training_window": champion.lineage.get("training_window"),
            "metrics": champion.metrics["test"],
        },
    }
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
