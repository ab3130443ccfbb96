"""Leaderboard order and rendering; the gate's verdicts from bootstrap intervals and calibration."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from ml.evaluation.bootstrap import Interval, paired_bootstrap
from ml.evaluation.leaderboard import (
    Comparison,
    GateSettings,
    gate,
    leaderboard,
    leaderboard_text,
)
from ml.evaluation.metrics import binary_metrics, expected_calibration_error
from ml.training.params import load_params
from tests.conftest import PROJECT

STRICT = GateSettings(
    champion_margin=0.005,
    baseline_margin=0.0,
    max_calibration_error=0.03,
    resamples=1000,
    confidence=0.95,
    seed=0,
)


def auc(value: float) -> dict[str, float]:
    return {"roc_auc": value, "log_loss": 0.5, "rows": 1000}


def test_leaderboard_ranks_by_roc_auc_and_renders_for_the_terminal() -> None:
    frame = leaderboard(
        [
            ("prior", "baseline", auc(0.5)),
            ("candidate", "candidate", auc(0.71)),
            ("trees", "baseline", auc(0.69)),
        ]
    )
    assert frame["name"].to_list() == ["candidate", "trees", "prior"]
    assert frame.columns == ["name", "role", "roc_auc", "log_loss", "rows"]
    assert frame["rows"].to_list() == [1000, 1000, 1000]
    text = leaderboard_text(frame).splitlines()
    assert text[0].split() == ["name", "role", "roc_auc", "log_loss", "rows"]
    assert text[2].split() == ["candidate", "candidate", "0.7100", "0.5000", "1000"]
    assert len(text) == 5


def test_leaderboard_refuses_duplicates_and_unranked_models() -> None:
    with pytest.raises(ValueError, match="more than once"):
        leaderboard([("a", "candidate", auc(0.6)), ("a", "baseline", auc(0.5))])
    with pytest.raises(ValueError, match="roc_auc"):
        leaderboard([("a", "candidate", {"log_loss": 0.5})])
    with pytest.raises(ValueError, match="no models"):
        leaderboard([])


def noisy_split(
    candidate_noise: tuple[float, float], days: int = 61, per_day: int = 900
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A test split of the default size: each flight's true delay probability plus noise.

    The trees' noise is the same every day; the candidate's alternates by day between
    `candidate_noise[0]` (even days) and `[1]` (odd days), so which days a resample draws
    decides which model looks better. Without noise the candidate is the true probability.
    """
    rng = np.random.default_rng(0)
    day = np.repeat(np.arange(days), per_day)
    truth = rng.uniform(0.05, 0.55, size=day.size)
    y = (rng.uniform(size=day.size) < truth).astype(np.int64)
    trees = truth + rng.normal(0, 0.15, day.size)
    candidate = truth + rng.normal(0, 1, day.size) * np.where(day % 2 == 0, *candidate_noise)
    return y, day, {"candidate": np.clip(candidate, 0.01, 0.99), "boosted_trees": np.clip(trees, 0.01, 0.99)}


def test_the_gate_refuses_a_candidate_whose_lead_is_inside_the_bootstrap_interval() -> None:
    """The audit's case: a small lead on the test split that the day-to-day noise swamps."""
    y, day, predictions = noisy_split(candidate_noise=(0.1, 0.2))
    points = {name: binary_metrics(y, p)["roc_auc"] for name, p in predictions.items()}
    lead = points["candidate"] - points["boosted_trees"]
    # the old gate compared these two numbers (candidate >= trees - tolerance 0) and passed it
    assert 0.002 < lead < 0.005
    settings = replace(STRICT, max_calibration_error=1.0)  # this test is about ranking only
    calibration = expected_calibration_error(y, predictions["candidate"])
    result = gate(paired_bootstrap(y, day, predictions), calibration, settings)
    versus = result.versus["boosted_trees"].difference
    assert versus.estimate == pytest.approx(lead, abs=1e-12)
    assert versus.low < -settings.baseline_margin < versus.estimate < versus.high
    assert not result.beats_boosted_trees.passed and not result.passed
    assert result.beats_champion.passed and result.calibrated.passed
    explanation = result.beats_boosted_trees.explanation
    assert f"{lead:+.4f}" in explanation and f"[{versus.low:+.4f}, {versus.high:+.4f}]" in explanation
    assert "-margin = +0.0000: fails" in explanation and "1000 day resamples" in explanation


def test_a_candidate_whose_whole_interval_clears_the_margins_passes() -> None:
    y, day, predictions = noisy_split(candidate_noise=(0.0, 0.0), days=30, per_day=300)
    predictions["champion"] = predictions["boosted_trees"]
    calibration = expected_calibration_error(y, predictions["candidate"])
    result = gate(paired_bootstrap(y, day, predictions), calibration, STRICT)
    assert result.passed, result.verdicts
    assert result.versus["champion"].difference.low > 0
    assert "passes" in result.beats_champion.explanation


def test_the_gate_refuses_a_well_ranking_candidate_whose_probabilities_are_off() -> None:
    y, day, predictions = noisy_split(candidate_noise=(0.0, 0.0), days=30, per_day=300)
    shifted = np.clip(predictions["candidate"] + 0.1, 0, 1)  # same ranking, a tenth too high
    calibration = expected_calibration_error(y, shifted)
    result = gate(paired_bootstrap(y, day, {**predictions, "candidate": shifted}), calibration, STRICT)
    assert result.beats_boosted_trees.passed and result.beats_champion.passed
    assert calibration > STRICT.max_calibration_error
    assert not result.calibrated.passed and not result.passed
    assert result.calibrated.explanation == (
        f"candidate expected calibration error {calibration:.4f} > bound 0.0300: fails"
    )


@pytest.mark.parametrize(
    ("low", "passed"),
    [(-0.01, False), (-0.0099, True), (-0.0101, False)],
    ids=["at_margin", "just_above", "just_below"],
)
def test_a_comparison_passes_only_when_its_lower_bound_is_above_minus_margin(
    low: float, passed: bool
) -> None:
    comparison = Comparison("champion", Interval(0.003, low, 0.013), 0.01, 0.95, 1000)
    assert comparison.passed is passed
    verdict = comparison.verdict()
    assert f"[{low:+.4f}, +0.0130]" in verdict.explanation and "-margin = -0.0100" in verdict.explanation
    assert verdict.figures == {"diff": 0.003, "low": low, "high": 0.013, "margin": 0.01, "passed": passed}


def test_without_a_champion_the_gate_records_no_comparison_with_one() -> None:
    y, day, predictions = noisy_split(candidate_noise=(0.0, 0.0), days=10, per_day=200)
    result = gate(paired_bootstrap(y, day, predictions), 0.01, STRICT)
    assert "no champion yet" in result.beats_champion.explanation and result.passed
    summary = json.loads(json.dumps(result.summary()))
    assert summary["comparisons"]["champion"] is None
    assert set(summary["comparisons"]["boosted_trees"]) == {"diff", "low", "high", "margin", "passed"}
    assert summary["margins"] == {"champion": 0.005, "boosted_trees": 0.0}
    assert summary["calibration"] == {"expected_calibration_error": 0.01, "max": 0.03, "passed": True}
    assert (summary["resamples"], summary["confidence"], summary["seed"], summary["days"]) == (
        1000,
        0.95,
        0,
        10,
    )
    assert summary["passed"] is True and "passes" in summary["beats_boosted_trees"]
    assert result.table()["check"].to_list() == ["vs boosted_trees", "calibration error"]
    figures = result.figures()
    assert set(figures) == {
        "auc_diff_vs_boosted_trees",
        "auc_diff_vs_boosted_trees_low",
        "auc_diff_vs_boosted_trees_high",
        "roc_auc_low",
        "roc_auc_high",
        "expected_calibration_error",
    }
    with pytest.raises(ValueError, match="needs a bootstrap of boosted_trees"):
        gate(paired_bootstrap(y, day, {"candidate": predictions["candidate"]}), 0.01, STRICT)


def test_a_dirty_source_tree_is_recorded_and_refused_only_when_the_gate_is_told_to() -> None:
    y, day, predictions = noisy_split(candidate_noise=(0.0, 0.0), days=30, per_day=300)
    calibration = expected_calibration_error(y, predictions["candidate"])
    bootstrap = paired_bootstrap(y, day, predictions)
    dirty = {"commit": "abc123", "changed": ["ml/training/model.py"], "dirty": True}
    recorded = gate(bootstrap, calibration, STRICT, dirty)
    assert recorded.passed and recorded.clean_source.passed
    assert "uncommitted changes (ml/training/model.py); recorded; passes" in recorded.clean_source.explanation
    refused = gate(bootstrap, calibration, replace(STRICT, refuse_dirty_source=True), dirty)
    assert not refused.passed and not refused.clean_source.passed
    assert "gate.refuse_dirty_source is set: fails" in refused.clean_source.explanation
    clean = gate(bootstrap, calibration, replace(STRICT, refuse_dirty_source=True), {"commit": "abc123"})
    assert clean.passed and "clean tree" in clean.clean_source.explanation
    with pytest.raises(ValueError, match="refuse_dirty_source must be true or false"):
        GateSettings.from_section({**asdict(STRICT), "refuse_dirty_source": "yes"})


def test_gate_settings_come_from_the_params_section_and_refuse_gaps_typos_and_nonsense() -> None:
    assert GateSettings.from_section(load_params(PROJECT / "params.yaml")["gate"]) == STRICT
    section = asdict(STRICT)
    with pytest.raises(ValueError, match=r"missing \['seed'\], unknown \['sede'\]"):
        GateSettings.from_section({**{k: v for k, v in section.items() if k != "seed"}, "sede": 0})
    with pytest.raises(ValueError, match="resamples must be >= 1000"):
        GateSettings.from_section({**section, "resamples": 100})
    with pytest.raises(ValueError, match="margins must be >= 0"):
        GateSettings.from_section({**section, "champion_margin": -0.01})


def test_entries_that_are_not_numbers_are_no_leaderboard_column() -> None:
    trees = {**auc(0.69), "validation_auc": 0.7, "settings": {"max_leaf_nodes": 31}}
    frame = leaderboard([("candidate", "candidate", auc(0.71)), ("boosted_trees", "baseline", trees)])
    assert frame.columns == ["name", "role", "roc_auc", "log_loss", "rows", "validation_auc"]
    assert frame["validation_auc"].to_list() == [None, 0.7]


def test_headline_metrics_come_first_whatever_order_the_metrics_were_stored_in() -> None:
    stored = {"brier": 0.17, "log_loss": 0.52, "rows": 10.0, "roc_auc": 0.72, "pr_auc": 0.48, "zeta": 1.0}
    frame = leaderboard([("v1", "candidate", stored)])
    assert frame.columns == ["name", "role", "roc_auc", "pr_auc", "log_loss", "brier", "rows", "zeta"]
