"""Training: the DVC-pinned training set, the candidate trained through a launcher, and its evaluation.

`training/evaluation` scores the candidate its own run trained against the champion and two
baselines; its blocking checks are the promotion gate that `deployment/champion_model` sits behind.
"""

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field

from assets.features import flight_features
from assets.metadata import lineage_metadata
from assets.run_models import run_candidate_version
from assets.step_resources import EVALUATION, TRAINING_SET, k8s_step_tags
from ml.evaluation.leaderboard import GateSettings, leaderboard_text
from ml.lineage.chain import Sources, model_chain
from ml.registry.candidates import plan_training, register_candidate
from ml.registry.dvc_repo import PARAMS_FILE, TRAINING_SET_PATH
from ml.registry.model_registry import ModelRegistry
from ml.text_tables import markdown_table
from ml.training.params import cutoff, load_params, split_sizes
from ml.training.training_set import snapshot_from_lake
from resources import (
    ArtifactsResource,
    DvcResource,
    LakeResource,
    LandingResource,
    TrainingLauncher,
    TrainingRequest,
)

GROUP = "training"
EVALUATION_KEY = dg.AssetKey(["training", "evaluation"])
GATE_CHECKS = {
    "beats_champion": "The lower bound of the day-bootstrap interval of (candidate - champion) "
    "ROC AUC is above -champion_margin.",
    "beats_boosted_trees": "The lower bound of the day-bootstrap interval of (candidate - boosted trees) "
    "ROC AUC is above -baseline_margin.",
    "calibrated": "The candidate's expected calibration error on the test split is within max_calibration_error.",
    "clean_source": "The candidate was trained from committed code, or refuse_dirty_source is off "
    "(a dirty tree is always recorded).",
}
"""The promotion gate: blocking checks, so a failed candidate never reaches deployment/champion_model."""


class TrainingSetConfig(dg.Config):
    cutoff: str = Field(
        default="",
        description="Last day (YYYY-MM-DD); empty: params.yaml, else the latest day whose validation "
        "and test days are all built.",
    )


class GateConfig(dg.Config):
    """Run-config overrides of params.yaml's `gate:` section; a field left empty keeps params.yaml's value."""

    champion_margin: float | None = Field(
        default=None,
        description="ROC AUC the candidate may lose to the champion (lower bound of the interval).",
    )
    baseline_margin: float | None = Field(
        default=None, description="ROC AUC the candidate may lose to the boosted-trees baseline."
    )
    max_calibration_error: float | None = Field(
        default=None, description="Bound on the candidate's expected calibration error on the test split."
    )
    resamples: int | None = Field(default=None, description="Day resamples of the bootstrap.")
    confidence: float | None = Field(default=None, description="Level of the bootstrap intervals.")
    seed: int | None = Field(default=None, description="Seed of the resampling.")
    refuse_dirty_source: bool | None = Field(
        default=None, description="Refuse a candidate trained from a tree with uncommitted changes."
    )


def gate_settings(config: GateConfig, params: dict[str, Any]) -> GateSettings:
    """params.yaml's gate section with the run's overrides on top."""
    return GateSettings.from_section({**params.get("gate", {}), **config.model_dump(exclude_none=True)})


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
    artifacts: ArtifactsResource,
    landing: LandingResource,
) -> dg.MaterializeResult:
    """Trains on the pinned training set (resuming from checkpoints on retry) and registers a candidate."""
    repo = dvc.repo()
    store = artifacts.store()
    run = plan_training(repo, store, load_params(dvc.path(PARAMS_FILE)))
    reported = launcher.launch(
        context, TrainingRequest(str(run.training_set), str(run.out), str(dvc.path(PARAMS_FILE)))
    )
    registry = ModelRegistry(lake.store(), artifacts.root, context.run.run_id)
    candidate = register_candidate(registry, repo, store, run, dt.datetime.now(dt.UTC))
    context.log.info(f"registered candidate version {candidate.version} from {candidate.artifact_uri}")
    chain = model_chain(Sources(registry, landing.zone()), candidate.version)
    if not chain.ok:
        context.log.warning("lineage of the new candidate has gaps:\n" + "\n".join(chain.problems))
    return dg.MaterializeResult(
        metadata={
            **(reported.metadata or {}),
            "registry_version": candidate.version,
            "artifact_uri": candidate.artifact_uri,
            "model_md5": candidate.model_md5,
            "training_set_md5": run.training_set_md5,
            **lineage_metadata(registry.get(candidate.version), chain),
        },
        data_version=dg.DataVersion(candidate.model_md5),
    )


@dg.asset(
    key=EVALUATION_KEY,
    group_name=GROUP,
    deps=[candidate_model],
    check_specs=[
        dg.AssetCheckSpec(name, asset=EVALUATION_KEY, blocking=True, description=description)
        for name, description in GATE_CHECKS.items()
    ],
    kinds={"onnx", "scikit-learn"},
    op_tags=k8s_step_tags(EVALUATION),
)
def evaluation(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    lake: LakeResource,
    dvc: DvcResource,
    artifacts: ArtifactsResource,
) -> dg.MaterializeResult:
    """Scores the run's candidate on its test split; a candidate that fails the gate is rejected."""
    # Imported here: scikit-learn and matplotlib take about 1.8 s to import, which every process
    # that loads the code location (webserver, daemon, each run's worker) would pay otherwise.
    from ml.evaluation.candidate_evaluation import evaluate_candidate
    from ml.evaluation.plots import png_markdown

    registry = ModelRegistry(lake.store(), artifacts.root, context.run.run_id)
    version = run_candidate_version(context)
    params = load_params(dvc.path(PARAMS_FILE))
    result = evaluate_candidate(
        registry,
        dvc.repo(),
        artifacts.store(),
        gate_settings(config, params),
        dt.datetime.now(dt.UTC),
        version,
        params.get("baseline", {}),
    )
    if version is None:
        context.log.warning(
            f"this run trained no candidate_model; evaluated the newest candidate v{result.candidate.version}"
        )
    report, gate = result.report, result.report.gate
    context.log.info("leaderboard\n" + leaderboard_text(report.leaderboard))
    freeze = registry.frozen()
    if freeze is not None:
        context.log.warning(f"{freeze.describe()}; deployment/champion_model will not promote")
    return dg.MaterializeResult(
        metadata={
            "candidate_version": result.candidate.version,
            "champion_version": result.champion.version if result.champion else None,
            "promotions_frozen": freeze is not None,
            "roc_auc": report.metrics["candidate"]["roc_auc"],
            "gate_passed": gate.passed,
            "gate": dg.MetadataValue.md(markdown_table(gate.table())),
            **gate.figures(),
            "boosted_trees_settings": dg.MetadataValue.json(report.metrics["boosted_trees"]["settings"]),
            "leaderboard": dg.MetadataValue.md(markdown_table(report.leaderboard)),
            "calibration": dg.MetadataValue.md(markdown_table(report.calibration, max_rows=20)),
            **{f"slices_{by}": dg.MetadataValue.md(markdown_table(f, 20)) for by, f in report.slices.items()},
            **{f"plot_{n}": dg.MetadataValue.md(png_markdown(b, n)) for n, b in result.plots.items()},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=name,
                passed=verdict.passed,
                metadata={"explanation": verdict.explanation, **verdict.figures},
            )
            for name, verdict in gate.verdicts.items()
        ],
    )
