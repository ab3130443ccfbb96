"""Real 2013 features for the drift tests, and a lake whose champion learned from January to September.

The features are built once per session from the whole year replayed into a landing
zone (the replay tool, then polars and `build_features`: a few seconds), so the drift
tests judge real weather, schedules and delays, not synthetic ones.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets import monitoring, training
from benchmarks.bare_polars import bare_features
from benchmarks.common import days_between, replay_landing
from ml.lake.delta import DeltaStore
from ml.lake.tables import FEATURES_TABLE
from ml.registry.dvc_repo import TRAINING_SET_PATH, DvcRepo
from ml.registry.model_registry import ModelRegistry
from resources import DvcResource, LakeResource
from tests.conftest import make_dvc_repo

YEAR_FIRST, YEAR_LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
TRAIN_LAST = dt.date(2013, 9, 30)
"""The default training set's train split ends here: validation is October, test November and December."""
CALM_LAST = dt.date(2013, 11, 9)
"""The lake of `YearPlatform` ends here at first; its newest week (Nov 3..9) is undrifted."""
# With the lake ending on CALM_LAST, these splits leave train on Jan 1..Sep 30 as the default does.
YEAR_SPLITS = {"training_set": {"validation_days": 9, "test_days": 31, "cutoff": ""}}


@pytest.fixture(scope="session")
def year_features(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Features of every flight of 2013 with an outcome, from the replayed source."""
    landing = replay_landing(tmp_path_factory.mktemp("year") / "landing", YEAR_FIRST, YEAR_LAST)
    return bare_features(landing, days_between(YEAR_FIRST, YEAR_LAST))


def days_of(features: pl.DataFrame, first: dt.date, last: dt.date) -> pl.DataFrame:
    return features.filter(pl.col("flight_date").is_between(first, last))


def write_days(store: DeltaStore, frame: pl.DataFrame) -> None:
    """Replace the frame's days of the feature table, as `features/flight_features` does."""
    store.replace_days(FEATURES_TABLE, frame, "flight_date", sorted(set(frame["flight_date"])), {})


@dataclass
class YearPlatform:
    """A lake of real features up to `CALM_LAST`, a DVC repository with a training set pinned and pushed."""

    root: Path

    @property
    def lake(self) -> LakeResource:
        return LakeResource(root=str(self.root / "lake"))

    @property
    def dvc(self) -> DvcResource:
        return DvcResource(repo_root=str(self.root / "repo"))

    @property
    def store(self) -> DeltaStore:
        return self.lake.store()

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.store, str(self.root / "models"))

    @property
    def repo(self) -> DvcRepo:
        return self.dvc.repo()

    @property
    def training_set(self) -> Path:
        return self.root / "repo" / TRAINING_SET_PATH

    def materialize(self, key: str, config: dict | None = None) -> dg.ExecuteInProcessResult:
        op = key.replace("/", "__")
        return dg.materialize(
            [training.training_set, monitoring.drift],
            selection=[key],
            resources={"lake": self.lake, "dvc": self.dvc},
            run_config={"ops": {op: {"config": config}}} if config else None,
        )

    def install_champion(self, training_set_md5: str) -> int:
        """Register and promote a model trained on `training_set_md5`.

        Drift reads the champion's registry row (its training-set md5), never its model,
        so the model files are placeholders: training a network here would only cost time.
        """
        folder = self.root / "models" / training_set_md5
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"placeholder")
        registry = ModelRegistry(self.store)
        now = dt.datetime.now(dt.UTC)
        version = registry.register(
            artifact_uri=str(folder),
            onnx_uri=str(folder / "model.onnx"),
            model_md5=f"model-of-{training_set_md5}",
            training_set_md5=training_set_md5,
            feature_table_uri=self.store.uri(FEATURES_TABLE),
            feature_table_version=self.store.version(FEATURES_TABLE) or 0,
            lake_versions={},
            git_commit="test",
            params={},
            metrics={},
            now=now,
        )
        registry.promote(version, "drift tests", now=now)
        return version


@pytest.fixture(scope="session")
def year_base(tmp_path_factory: pytest.TempPathFactory, year_features: pl.DataFrame) -> Path:
    """Built once: features Jan 1..Nov 9 and the real `training/training_set` (train Jan 1..Sep 30)."""
    root = tmp_path_factory.mktemp("year-platform")
    make_dvc_repo(root, YEAR_SPLITS)
    platform = YearPlatform(root)
    write_days(platform.store, days_of(year_features, YEAR_FIRST, CALM_LAST))
    assert platform.materialize("training/training_set").success
    return root


@pytest.fixture
def year_platform(year_base: Path, tmp_path: Path) -> YearPlatform:
    """A copy of the base for one test (the copies share the base's DVC remote, which only grows)."""
    shutil.copytree(year_base, tmp_path / "p", symlinks=True)
    return YearPlatform(tmp_path / "p")
