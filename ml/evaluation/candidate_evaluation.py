"""Evaluate a run's candidate: the checks that it is the model of the pinned training set, then the gate.

The candidate is the one the run trained (the newest when the run trained none). It is only
scored on the training set it was trained on (the DVC lock's md5 must equal the registry's),
with both models' artifacts present; a candidate that fails the gate is rejected in the
registry, so it can never be promoted or rolled back to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from ml.evaluation.evaluate import EvaluationReport, evaluate
from ml.evaluation.leaderboard import GateSettings
from ml.lake.storage import join_uri
from ml.registry.artifacts import ArtifactStore
from ml.registry.candidates import candidate_of_run
from ml.registry.dvc_repo import TRAINING_SET_PATH, DvcError, DvcRepo
from ml.registry.model_registry import ModelRegistry, ModelVersion, check_artifacts


@dataclass(frozen=True)
class CandidateEvaluation:
    candidate: ModelVersion
    champion: ModelVersion | None
    report: EvaluationReport
    plots: dict[str, bytes]


def checked_candidate(registry: ModelRegistry, repo: DvcRepo, version: int | None) -> ModelVersion:
    """The run's candidate, refused unless the training set on disk is the one it was trained on."""
    candidate = candidate_of_run(registry, version)
    check_artifacts(candidate, registry.store.storage_options)
    on_disk = repo.locked_output("training_set", TRAINING_SET_PATH).md5
    if on_disk != candidate.training_set_md5:
        raise DvcError(
            f"the training set in {repo.root / TRAINING_SET_PATH} ({on_disk}) is not the one candidate "
            f"v{candidate.version} was trained on ({candidate.training_set_md5})"
        )
    return candidate


def evaluate_candidate(
    registry: ModelRegistry,
    repo: DvcRepo,
    artifacts: ArtifactStore,
    settings: GateSettings,
    now: dt.datetime,
    version: int | None,
    baseline: Mapping[str, Any] | None = None,
) -> CandidateEvaluation:
    """Score the run's candidate against the champion and baselines, record it, reject it if it fails."""
    candidate = checked_candidate(registry, repo, version)
    champion = registry.champion()
    if champion is not None:
        check_artifacts(champion, registry.store.storage_options)
    with ExitStack() as stack:
        candidate_dir = stack.enter_context(artifacts.checkout(candidate.artifact_uri))
        champion_dir = stack.enter_context(artifacts.checkout(champion.artifact_uri)) if champion else None
        out = candidate_dir / "evaluation"
        out.mkdir(parents=True, exist_ok=True)
        report = evaluate(
            repo.root / TRAINING_SET_PATH,
            candidate_dir,
            champion_dir,
            out,
            settings,
            baseline,
            candidate.lineage.get("source"),
        )
        artifacts.publish(out, join_uri(candidate.artifact_uri, "evaluation"))
        plots = {name: path.read_bytes() for name, path in report.plots.items()}
    registry.update_metrics(candidate.version, {**candidate.metrics, **report.summary()})
    if not report.gate.passed:
        registry.reject(candidate.version, "promotion gate failed", now=now)
    return CandidateEvaluation(candidate=candidate, champion=champion, report=report, plots=plots)
