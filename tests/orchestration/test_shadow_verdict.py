"""The shadow verdict job: on the flights' outcomes, a shadow is promoted, rejected, or left waiting.

Answers are logged for the champion and the shadow on real bronze flights; how well each
ranks them is set by the test, so the verdict it must reach is known.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from ml.lake.tables import BRONZE_FLIGHTS, PREDICTIONS_TABLE
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA, append
from ml.registry.model_registry import ModelRegistry, RegistryError
from orchestration.shadow_jobs import shadow_verdict
from tests.conftest import TrainingPlatform, day

NOW = dt.datetime(2013, 1, 1, 6, tzinfo=dt.UTC)
PASSED = {"passed": True, "beats_champion": "ok"}


def _register(registry: ModelRegistry, root: Path, name: str) -> int:
    (root / name).mkdir(parents=True)
    (root / name / "model.onnx").write_bytes(b"onnx")
    return registry.register(
        artifact_uri=name,
        onnx_uri=f"{name}/model.onnx",
        model_md5=name,
        training_set_md5="t",
        feature_table_uri="features/flight_features",
        feature_table_version=1,
        lake_versions={},
        git_commit="abc",
        params={},
        metrics={"gate": PASSED},
        now=NOW,
    )


def _log(p: TrainingPlatform, version: int, skill: float, seed: int) -> None:
    """One answer per landed flight of days 1-3; `skill` mixes the true outcome into the probability."""
    flights = p.store.read(BRONZE_FLIGHTS).filter(pl.col("arr_delay").is_not_null())
    delayed = (flights["arr_delay"] >= 15).cast(pl.Float64).to_numpy()
    noise = np.random.default_rng(seed).uniform(size=flights.height)
    probability = np.clip(skill * delayed + (1 - skill) * noise, 0.001, 0.999)
    rows = flights.select(
        pl.format("r{}-{}", pl.lit(version), pl.int_range(pl.len())).alias("request_id"),
        pl.lit(NOW).alias("requested_at"),
        pl.lit(0).alias("position"),
        pl.lit(version).alias("model_version"),
        pl.lit("snapshot").alias("snapshot_id"),
        "carrier",
        "flight",
        "origin",
        "dest",
        "sched_dep_utc",
        "tailnum",
        "distance",
        "flight_date",
        pl.Series("delay_probability", probability),
    )
    columns = [
        pl.col(c).cast(t) if c in rows.columns else pl.lit(None, t).alias(c)
        for c, t in PREDICTION_LOG_SCHEMA.items()
    ]
    append(p.store, PREDICTIONS_TABLE, rows.select(columns), {"test": "answers"})


@pytest.fixture
def shadowing(training_platform: TrainingPlatform) -> tuple[TrainingPlatform, ModelRegistry]:
    p = training_platform
    p.bronze(day(1), day(3))
    params = yaml.safe_load((p.repo / "params.yaml").read_text())
    params["promotion"] = {"shadow_days": 3, "shadow_margin": 0.005, "shadow_min_flights": 500}
    (p.repo / "params.yaml").write_text(yaml.safe_dump(params))
    registry = ModelRegistry(p.store, str(p.root / "models"))
    champion = _register(registry, p.root / "models", "champion")
    registry.promote(champion, "first", now=NOW)
    challenger = _register(registry, p.root / "models", "challenger")
    assert registry.start_shadow(challenger, "passed its gate: serving in shadow", now=NOW) is None
    assert registry.shadow().version == challenger and registry.champion().version == champion
    return p, registry


def _judge(p: TrainingPlatform) -> str:
    result = shadow_verdict.execute_in_process(resources=p.resources)
    assert result.success
    return result.output_for_node("judge_shadow")


def test_a_shadow_that_ranks_live_flights_better_is_promoted(shadowing) -> None:
    p, registry = shadowing
    _log(p, 1, skill=0.1, seed=1)
    _log(p, 2, skill=0.5, seed=2)
    assert _judge(p) == "promote"
    assert registry.champion().version == 2 and registry.shadow() is None
    assert "non-inferior" in registry.last_reason(
        2
    ) and "paired flights over 3 day(s)" in registry.last_reason(2)
    assert {m.version: m.status for m in registry.versions()} == {1: "archived", 2: "champion"}


def test_a_shadow_worse_beyond_the_margin_is_rejected_and_the_champion_stays(shadowing) -> None:
    p, registry = shadowing
    _log(p, 1, skill=0.5, seed=1)
    _log(p, 2, skill=0.1, seed=2)
    assert _judge(p) == "reject"
    assert registry.champion().version == 1 and registry.get(2).status == "rejected"
    assert "inferior in shadow" in registry.last_reason(2)
    with pytest.raises(RegistryError, match="rejected"):
        registry.promote_passed(2, "try anyway", now=NOW)


def test_too_few_days_of_outcomes_wait(shadowing) -> None:
    p, registry = shadowing
    _log(p, 1, skill=0.1, seed=1)
    _log(p, 2, skill=0.5, seed=2)
    p.store.overwrite(  # the outcomes of day 3 have not landed
        BRONZE_FLIGHTS,
        p.store.read(BRONZE_FLIGHTS).filter(pl.col("flight_date") < day(3)),
        {"test": "two days"},
    )
    assert _judge(p) == "wait"
    assert registry.shadow().version == 2 and registry.champion().version == 1
