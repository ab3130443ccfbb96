"""Shared fixtures: a replayed landing zone and real resources pointed at temporary folders."""

from __future__ import annotations

import os

# One thread per worker before torch or scikit-learn load: the suite runs a worker per core,
# and OpenMP pools of every worker spinning on the same cores made boosted trees 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The partitions are read from the environment when the assets load: the suite runs on the
# demo's 2013 whatever the shell says (tests of other spans set them in a subprocess).
os.environ.pop("PLATFORM_FIRST_DAY", None)
os.environ.pop("PLATFORM_LAST_DAY", None)

import datetime as dt
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dagster as dg
import pytest
import yaml
from dagster_shared.error import SerializableErrorInfo

from assets import bronze, deployment, features, training
from assets.partitions import range_tags
from ml.ingest.landing_zone import LandingZone
from ml.ingest.replay import replay
from ml.lake.delta import DeltaStore
from ml.registry.dvc_repo import init_pipeline_repo
from ml.registry.model_registry import ModelRegistry, ModelVersion
from resources import ArtifactsResource, DvcResource, LakeResource, LandingResource, LocalLauncher
from serving.config import ServingConfig

REPLAY_FIRST, REPLAY_LAST = dt.date(2013, 1, 1), dt.date(2013, 2, 15)
PROJECT = Path(__file__).resolve().parents[1]
ASSETS = [
    *dg.load_assets_from_modules([bronze, features, training, deployment]),
    features.registered_versions_recoverable,
]
REFERENCE_KEYS = ["bronze/planes", "bronze/airports", "bronze/airlines"]


@pytest.fixture(scope="session")
def replayed_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """January to mid-February 2013 replayed once per session; tests copy it."""
    landing = tmp_path_factory.mktemp("replayed") / "landing"
    replay(landing, REPLAY_FIRST, REPLAY_LAST)
    return landing


@dataclass
class Platform:
    """Real resources over temporary folders, and ways to run the real assets on them."""

    root: Path

    @property
    def landing_dir(self) -> Path:
        return self.root / "landing"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def resources(self) -> dict[str, object]:
        return {
            "lake": LakeResource(root=str(self.root / "lake")),
            "landing": LandingResource(root=str(self.landing_dir), quarantine_root=str(self.quarantine_dir)),
            "dvc": DvcResource(repo_root=str(self.root / "repo")),
            "artifacts": ArtifactsResource(root=str(self.root / "models")),
            "launcher": LocalLauncher(cwd=str(PROJECT)),
        }

    @property
    def store(self) -> DeltaStore:
        return DeltaStore(str(self.root / "lake"))

    @property
    def registry(self) -> ModelRegistry:
        """The registry with the artifacts root its model keys are under, as the assets open it."""
        return ModelRegistry(self.store, str(self.root / "models"))

    @property
    def zone(self) -> LandingZone:
        return LandingZone(str(self.landing_dir), str(self.quarantine_dir))

    def materialize(
        self,
        selection: Sequence[str],
        first: dt.date | None = None,
        last: dt.date | None = None,
        raise_on_error: bool = True,
        instance: dg.DagsterInstance | None = None,
    ) -> dg.ExecuteInProcessResult:
        tags = {}
        if first is not None:
            tags = range_tags(first, last or first)
        return dg.materialize(
            ASSETS,
            selection=list(selection),
            resources=self.resources,
            tags=tags,
            raise_on_error=raise_on_error,
            instance=instance,
        )

    def reference(self) -> None:
        self.materialize(REFERENCE_KEYS)

    def bronze(self, first: dt.date, last: dt.date | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        return self.materialize(["bronze/flights", "bronze/weather"], first, last, **kwargs)

    def features(self, first: dt.date, last: dt.date | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        return self.materialize(["features/flight_features"], first, last, **kwargs)


@pytest.fixture
def platform(tmp_path: Path, replayed_landing: Path) -> Platform:
    """A platform whose landing zone holds the replayed days and whose reference tables exist."""
    shutil.copytree(replayed_landing, tmp_path / "landing")
    p = Platform(tmp_path)
    p.reference()
    return p


def day(n: int) -> dt.date:
    """Day n of 2013 counted from 1 (day(1) is 2013-01-01)."""
    return dt.date(2013, 1, 1) + dt.timedelta(days=n - 1)


def error_text(error: SerializableErrorInfo | None) -> str:
    """The message of an error and of every error it was caused by."""
    parts: list[str] = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Failed step key -> the full error text of its failure."""
    return {
        event.step_key or "": error_text(event.step_failure_data.error)
        for event in result.all_events
        if event.is_step_failure
    }


def landing_file(platform: Platform, n: int, dataset: str = "flights") -> Path:
    return platform.landing_dir / dataset / f"{day(n).isoformat()}.csv"


def module_help(module: str) -> str:
    """`python -m module --help` from the project root; fails the test unless it exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def uri(path: Path) -> str:
    return str(path.resolve())


def make_dvc_repo(root: Path, params_override: dict | None = None) -> Path:
    """A git + DVC repository (`root/repo`) holding the project's pipeline files and a local remote."""
    return init_pipeline_repo(root / "repo", PROJECT, root / "dvc-remote", params_override).root


PLUMBING_GATE = {"baseline_margin": 1.0, "max_calibration_error": 1.0}
"""Three epochs judged on three test days make a network that trees may beat and that may be
ill-calibrated: tests of the chain let it through on both counts, so their outcome never hangs
on model quality. A test of a verdict sets that verdict's bound in the run config."""
SMALL_PLATFORM = {
    "training_set": {"validation_days": 3, "test_days": 3, "cutoff": ""},
    "gate": PLUMBING_GATE,
    # Two points still make the trees' tuning a choice; the full grid is sized for a year.
    "baseline": {"learning_rate": [0.1], "max_leaf_nodes": [31], "min_samples_leaf": [20, 100]},
}
"""params.yaml overrides of a test platform: three-day splits, the plumbing gate, a small grid."""


class TrainingPlatform(Platform):
    """A platform whose DVC repository (`root/repo`) is a temporary git repository."""

    @property
    def repo(self) -> Path:
        return self.root / "repo"


@pytest.fixture
def training_platform(tmp_path: Path, replayed_landing: Path) -> TrainingPlatform:
    shutil.copytree(replayed_landing, tmp_path / "landing")
    make_dvc_repo(tmp_path, SMALL_PLATFORM)
    p = TrainingPlatform(tmp_path)
    p.reference()
    return p


# Small enough for tests; the trained network still beats the prior.
FAST_TRAINING = {"max_epochs": 3, "patience": 2}


class HasRepo(Protocol):
    @property
    def repo(self) -> Path: ...


def set_training(p: HasRepo, values: dict) -> None:
    """Overrides of the `train` section of the platform repository's params.yaml."""
    params = p.repo / "params.yaml"
    data = yaml.safe_load(params.read_text())
    data["train"].update(values)
    params.write_text(yaml.safe_dump(data, sort_keys=False))


# --- a trained champion with its online snapshot, for the serving and monitoring tests ---------

TOKEN = "client-token"
ADMIN_TOKEN = "admin-token"
MAX_BATCH = 1000
LAST_DAY = day(14)


@dataclass
class Served:
    """A platform with a trained champion and a published online snapshot (trained once per process)."""

    platform: TrainingPlatform
    champion: ModelVersion

    @property
    def test_split(self) -> Path:
        return self.platform.repo / "data" / "training_set" / "test.parquet"

    def config(self, **overrides: object) -> ServingConfig:
        settings: dict = {
            "lake_uri": str(self.platform.root / "lake"),
            "artifacts_uri": str(self.platform.root / "models"),
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
    make_dvc_repo(root, SMALL_PLATFORM)
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
    registry = platform.registry
    registry.promote(1, "serving tests", now=dt.datetime.now(dt.UTC))
    return Served(platform, registry.get(1))


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
