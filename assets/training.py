"""Training: the DVC-pinned training set and the candidate model trained through a launcher."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.features import flight_features
from ml.lake.storage import join_uri
from ml.registry.model_registry import ModelRegistry
from ml.registry.provenance import git_commit, model_key
from ml.training.params import cutoff, load_params, split_sizes
from ml.training.training_set import FEATURES_TABLE, read_manifest, snapshot_from_lake
from orchestration.step_resources import TRAINING_SET, k8s_step_tags
from resources import ArtifactStore, DvcResource, LakeResource, TrainingLauncher, TrainingRequest

GROUP = "training"
TRAINING_SET_PATH = "data/training_set"
MODEL_PATH = "data/model"
PARAMS_FILE = "params.yaml"


class TrainingSetConfig(dg.Config):
    cutoff: str = Field(
        default="", description="Last day (YYYY-MM-DD); empty: params.yaml, else the latest day."
    )


@dg.asset(
    key=["training", "training_set"],
    group_name=GROUP,
    deps=[flight_features],
    kinds={"dvc", "parquet"},
    op_tags=k8s_step_tags(TRAINING_SET),
)
def training_set(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, lake: LakeResource, dvc: DvcResource
) -> dg.MaterializeResult:
    """Features up to a cutoff, split by time, written as files and pinned by DVC."""
    params = load_params(dvc.path(PARAMS_FILE))
    chosen = dt.date.fromisoformat(config.cutoff) if config.cutoff else cutoff(params)
    repo = dvc.repo()
    repo.check_remote()
    manifest = snapshot_from_lake(lake.store(), dvc.path(TRAINING_SET_PATH), chosen, split_sizes(params))
    repo.commit("training_set")
    repo.push("training_set")
    locked = repo.locked_output("training_set", TRAINING_SET_PATH)
    splits = manifest["splits"]
    return dg.MaterializeResult(
        metadata={
            "feature_table": manifest["source"]["feature_table"],
            "feature_table_version": manifest["source"]["feature_table_version"],
            "cutoff": manifest["cutoff"],
            "md5": locked.md5,
            "bytes": locked.size,
            "path": str(dvc.path(TRAINING_SET_PATH)),
            **{f"{name}_rows": info["rows"] for name, info in splits.items()},
            **{f"{name}_label_rate": info["label_rate"] for name, info in splits.items()},
            **{f"{name}_days": f"{info['first']}..{info['last']}" for name, info in splits.items()},
        },
        data_version=dg.DataVersion(locked.md5),
    )


@dg.asset(
    key=["training", "candidate_model"],
    group_name=GROUP,
    deps=[training_set],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5),
    kinds={"pytorch", "onnx"},
)
def candidate_model(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    dvc: DvcResource,
    launcher: TrainingLauncher,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Trains on the pinned training set (resuming from checkpoints on retry) and registers a candidate."""
    repo = dvc.repo()
    folder = dvc.path(TRAINING_SET_PATH)
    manifest = read_manifest(folder)
    training_md5 = repo.locked_output("training_set", TRAINING_SET_PATH).md5
    params = load_params(dvc.path(PARAMS_FILE))
    store = artifacts.store()
    key = model_key(training_md5, params.get("train", {}))
    out = store.work_folder(key)
    reported = launcher.launch(context, TrainingRequest(str(folder), str(out), str(dvc.path(PARAMS_FILE))))

    pinned = dvc.path(MODEL_PATH)
    if pinned.exists():
        shutil.rmtree(pinned)
    shutil.copytree(out, pinned, ignore=shutil.ignore_patterns("checkpoints"))
    repo.commit("train")
    repo.push("train")
    model_md5 = repo.locked_output("train", MODEL_PATH).md5

    metrics = _read_json(out / "metrics.json")
    artifact_uri = store.publish(out, store.uri(key))
    feature_version = int(manifest["source"]["feature_table_version"])
    version = ModelRegistry(lake.store()).register(
        artifact_uri=artifact_uri,
        onnx_uri=join_uri(artifact_uri, "model.onnx"),
        model_md5=model_md5,
        training_set_md5=training_md5,
        feature_table_uri=manifest["source"]["feature_table"],
        feature_table_version=feature_version,
        lake_versions={FEATURES_TABLE: feature_version},
        git_commit=git_commit(dvc.path(".")),
        params=params.get("train", {}),
        metrics={"training": metrics},
    )
    context.log.info(f"registered candidate version {version} from {artifact_uri}")
    return dg.MaterializeResult(
        metadata={
            **(reported.metadata or {}),
            "registry_version": version,
            "artifact_uri": artifact_uri,
            "model_md5": model_md5,
            "training_set_md5": training_md5,
        },
        data_version=dg.DataVersion(model_md5),
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())
