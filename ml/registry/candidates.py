"""A trained model folder becomes a registered candidate: pinned by DVC, published, registered.

The order is what makes a candidate trustworthy: the DVC lock is committed before the
registry row exists, so every registered version names a model md5 that DVC can restore.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.lake.tables import FEATURES_TABLE
from ml.lineage.ledger import read_versions, training_window
from ml.registry.artifacts import TIMINGS, UNPINNED, ArtifactStore
from ml.registry.dvc_repo import MODEL_PATH, TRAINING_SET_PATH, DvcRepo
from ml.registry.model_registry import FILES, ModelRegistry, ModelVersion, RegistryError, file_md5s
from ml.registry.provenance import git_commit, model_key, source_tree
from ml.training.training_set import read_manifest


@dataclass(frozen=True)
class TrainingRun:
    """What one training of the pinned training set reads and where it writes, named by content."""

    training_set: Path
    training_set_md5: str
    params: dict[str, Any]
    key: str
    out: Path


@dataclass(frozen=True)
class Candidate:
    version: int
    artifact_uri: str
    model_md5: str


def plan_training(repo: DvcRepo, artifacts: ArtifactStore, params: dict[str, Any]) -> TrainingRun:
    """The run of the training set DVC pinned: its key (training-set md5 and params), hence its folder."""
    training_md5 = repo.locked_output("training_set", TRAINING_SET_PATH).md5
    key = model_key(training_md5, params.get("train", {}))
    return TrainingRun(repo.root / TRAINING_SET_PATH, training_md5, params, key, artifacts.work_folder(key))


def pin_model(repo: DvcRepo, out: Path) -> str:
    """Copy the trained files (checkpoints and timings excluded) to the `train` stage's output, commit and push it."""
    pinned = repo.root / MODEL_PATH
    if pinned.exists():
        shutil.rmtree(pinned)
    shutil.copytree(out, pinned, ignore=shutil.ignore_patterns(*UNPINNED))
    repo.commit("train")
    repo.push("train")
    return repo.locked_output("train", MODEL_PATH).md5


def register_candidate(
    registry: ModelRegistry, repo: DvcRepo, artifacts: ArtifactStore, run: TrainingRun, now: dt.datetime
) -> Candidate:
    """Pin, publish and register the model that `run` wrote.

    The registry row keeps the md5 of every pinned file (`lineage.files`), taken from the copy DVC
    pinned: promotion (`check_artifacts`) and the model server compare the bytes they read against
    them, so a file changed after the model was judged is refused rather than served.
    """
    manifest = read_manifest(run.training_set)
    model_md5 = pin_model(repo, run.out)
    files = file_md5s(repo.root / MODEL_PATH)
    metrics = json.loads((run.out / "metrics.json").read_text())
    timings = json.loads((run.out / TIMINGS).read_text()) if (run.out / TIMINGS).exists() else []
    artifact_uri = artifacts.publish(run.out, artifacts.uri(run.key))
    feature_version = int(manifest["source"]["feature_table_version"])
    window = training_window(manifest)
    bronze = read_versions(registry.store, feature_version, window)
    version = registry.register(
        # By key, relative to the artifacts root: a copied or re-homed data directory reads its own.
        artifact_uri=run.key,
        onnx_uri=f"{run.key}/model.onnx",
        model_md5=model_md5,
        training_set_md5=run.training_set_md5,
        feature_table_uri=manifest["source"]["feature_table"],
        feature_table_version=feature_version,
        lake_versions={FEATURES_TABLE: feature_version},
        git_commit=git_commit(repo.root),
        params=run.params.get("train", {}),
        metrics={"training": metrics, "run": {"epochs": timings}},
        now=now,
        lineage={
            "bronze_versions": bronze,
            "source": source_tree(repo.root),
            "training_window": [window[0].isoformat(), window[-1].isoformat()],
            FILES: files,
        },
    )
    return Candidate(version=version, artifact_uri=artifact_uri, model_md5=model_md5)


def candidate_of_run(registry: ModelRegistry, version: int | None) -> ModelVersion:
    """The candidate a run trained (`version`), or the newest candidate when the run trained none.

    A run evaluates and promotes its own model, never one a concurrent run registered; a model
    that is no longer a candidate (a newer one superseded it, the gate rejected it) is refused.
    """
    if version is None:
        newest = registry.latest("candidate")
        if newest is None:
            raise RegistryError(
                "no model version with status candidate: materialize training/candidate_model"
            )
        return newest
    model = registry.get(version)
    if model.status != "candidate":
        why = registry.last_reason(version)
        raise RegistryError(
            f"model version {version}, trained by this run, is {model.status}"
            + (f" ({why})" if why else "")
            + "; it is no longer a candidate, so this run has nothing to evaluate or promote"
        )
    return model
