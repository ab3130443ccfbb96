"""A platform with a trained champion and a published online snapshot, shared by the serving tests.

Trained once per test process: the model is small (three epochs on two weeks of
January). Tests read it; the reload test, which promotes, gives the champion back.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from starlette.testclient import TestClient

from ml.registry import ModelRegistry, ModelVersion
from serving.app import create_app
from serving.config import ServingConfig
from tests.assets.test_train_evaluate_promote import FAST_TRAINING, set_training
from tests.conftest import ASSETS, SMALL_SPLITS, TrainingPlatform, day, make_dvc_repo

TOKEN = "client-token"
ADMIN_TOKEN = "admin-token"
MAX_BATCH = 1000
LAST_DAY = day(14)


@dataclass
class Served:
    platform: TrainingPlatform
    champion: ModelVersion

    @property
    def test_split(self) -> Path:
        return self.platform.repo / "data" / "training_set" / "test.parquet"

    def config(self, **overrides: object) -> ServingConfig:
        settings: dict = {
            "lake_uri": str(self.platform.root / "lake"),
            "token": TOKEN,
            "admin_token": ADMIN_TOKEN,
            "max_batch": MAX_BATCH,
            "poll_seconds": 0,
            "cache_dir": self.platform.root / "serving-cache",
        }
        return ServingConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, replayed_landing: Path) -> Served:
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(replayed_landing, root / "landing")
    make_dvc_repo(root, SMALL_SPLITS)
    platform = TrainingPlatform(root)
    platform.reference()
    set_training(platform, FAST_TRAINING)
    platform.bronze(day(1), LAST_DAY)
    platform.features(day(1), LAST_DAY)
    dg.materialize(
        ASSETS,
        selection=["training/training_set", "training/candidate_model", "features/online_snapshot"],
        resources=platform.resources,
    )
    registry = ModelRegistry(platform.store)
    registry.promote(1, "serving tests")
    return Served(platform, registry.get(1))


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.config())) as test_client:
        yield test_client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
