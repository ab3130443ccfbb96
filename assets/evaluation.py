"""Evaluation: the candidate against the champion and two baselines, with the promotion gate."""

from contextlib import ExitStack

import dagster as dg
from pydantic import Field

from assets.training import TRAINING_SET_PATH, candidate_model
from ml.evaluation.evaluate import evaluate
from ml.evaluation.leaderboard import leaderboard_text
from ml.evaluation.plots import png_markdown
from ml.lake.storage import join_uri
from ml.registry.dvc_repo import DvcError
from ml.registry.model_registry import ModelRegistry, RegistryError, check_artifacts
from ml.text_tables import markdown_table
from orchestration.step_resources import EVALUATION, k8s_step_tags
from resources import ArtifactStore, DvcResource, LakeResource

ASSET = dg.AssetKey(["training", "evaluation"])


class GateConfig(dg.Config):
    champion_margin: float = Field(
        default=0.005, ge=0, description="How much worse (ROC AUC) than the champion a candidate may be."
    )
    boosted_trees_tolerance: float = Field(
        default=0.0, ge=0, description="How much worse (ROC AUC) than the boosted-trees baseline it may be."
    )


@dg.asset(
    key=ASSET,
    group_name="evaluation",
    deps=[candidate_model],
    check_specs=[
        dg.AssetCheckSpec(
            "beats_champion",
            asset=ASSET,
            blocking=True,
            description="Not worse than the champion beyond the margin.",
        ),
        dg.AssetCheckSpec(
            "beats_boosted_trees",
            asset=ASSET,
            blocking=True,
            description="Not worse than the boosted-trees baseline.",
        ),
    ],
    kinds={"onnx", "scikit-learn"},
    op_tags=k8s_step_tags(EVALUATION),
)
def evaluation(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    lake: LakeResource,
    dvc: DvcResource,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Scores the newest candidate on its test split; a candidate that fails the gate is rejected."""
    registry = ModelRegistry(lake.store())
    candidate = registry.latest("candidate")
    if candidate is None:
        raise RegistryError(
            "no model version with status candidate to evaluate: materialize training/candidate_model"
        )
    options = registry.store.storage_options
    check_artifacts(candidate, options)
    on_disk = dvc.repo().locked_output("training_set", TRAINING_SET_PATH).md5
    if on_disk != candidate.training_set_md5:
        raise DvcError(
            f"the training set in {dvc.path(TRAINING_SET_PATH)} ({on_disk}) is not the one candidate "
            f"v{candidate.version} was trained on ({candidate.training_set_md5})"
        )
    champion = registry.champion()
    if champion is not None:
        check_artifacts(champion, options)
    store = artifacts.store()
    with ExitStack() as stack:
        candidate_dir = stack.enter_context(store.checkout(candidate.artifact_uri))
        champion_dir = stack.enter_context(store.checkout(champion.artifact_uri)) if champion else None
        out = candidate_dir / "evaluation"
        out.mkdir(parents=True, exist_ok=True)
        report = evaluate(
            dvc.path(TRAINING_SET_PATH),
            candidate_dir,
            champion_dir,
            out,
            config.champion_margin,
            config.boosted_trees_tolerance,
        )
        store.publish(out, join_uri(candidate.artifact_uri, "evaluation"))
        images = {
            f"plot_{name}": dg.MetadataValue.md(png_markdown(path.read_bytes(), name))
            for name, path in report.plots.items()
        }
    registry.update_metrics(candidate.version, {**candidate.metrics, **report.summary()})
    if not report.gate.passed:
        registry.reject(candidate.version, "promotion gate failed")
    context.log.info("leaderboard\n" + leaderboard_text(report.leaderboard))
    return dg.MaterializeResult(
        metadata={
            "candidate_version": candidate.version,
            "champion_version": champion.version if champion else None,
            "roc_auc": report.metrics["candidate"]["roc_auc"],
            "leaderboard": dg.MetadataValue.md(markdown_table(report.leaderboard)),
            "calibration": dg.MetadataValue.md(markdown_table(report.calibration, max_rows=20)),
            **{
                f"slices_{by}": dg.MetadataValue.md(markdown_table(frame, 20))
                for by, frame in report.slices.items()
            },
            **images,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="beats_champion",
                passed=report.gate.beats_champion.passed,
                metadata={"explanation": report.gate.beats_champion.explanation},
            ),
            dg.AssetCheckResult(
                check_name="beats_boosted_trees",
                passed=report.gate.beats_boosted_trees.passed,
                metadata={"explanation": report.gate.beats_boosted_trees.explanation},
            ),
        ],
    )
