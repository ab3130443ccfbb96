"""Leaderboard order and rendering; gate verdicts at, just above and just below the margin."""

from __future__ import annotations

import pytest

from ml.evaluation.leaderboard import gate, leaderboard, leaderboard_text


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


@pytest.mark.parametrize(
    ("candidate", "passed"),
    [(0.69, True), (0.6901, True), (0.6899, False)],
    ids=["at_margin", "just_above", "just_below"],
)
def test_beats_champion_at_the_margin(candidate: float, passed: bool) -> None:
    result = gate(auc(candidate), auc(0.70), auc(0.60), margin=0.01)
    assert result.beats_champion.passed is passed
    explanation = result.beats_champion.explanation
    assert f"{candidate:.4f}" in explanation and "0.7000" in explanation and "0.0100" in explanation
    assert ("passes" if passed else "fails") in explanation


def test_without_a_champion_only_the_trees_can_block() -> None:
    result = gate(auc(0.55), None, auc(0.60), margin=0.01)
    assert result.beats_champion.passed and "no champion" in result.beats_champion.explanation
    assert not result.beats_boosted_trees.passed and not result.passed
    assert (
        "0.5500" in result.beats_boosted_trees.explanation
        and "0.6000" in result.beats_boosted_trees.explanation
    )


@pytest.mark.parametrize(
    ("candidate", "tolerance", "passed"),
    [(0.65, 0.0, True), (0.6501, 0.0, True), (0.6499, 0.0, False), (0.64, 0.01, True), (0.6399, 0.01, False)],
)
def test_beats_boosted_trees_with_tolerance(candidate: float, tolerance: float, passed: bool) -> None:
    result = gate(auc(candidate), auc(0.60), auc(0.65), margin=0.01, tolerance=tolerance)
    assert result.beats_boosted_trees.passed is passed
    assert result.passed is passed
    assert "boosted trees ROC AUC 0.6500" in result.beats_boosted_trees.explanation


def test_gate_refuses_negative_allowances_and_missing_auc() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        gate(auc(0.7), None, auc(0.6), margin=-0.01)
    with pytest.raises(ValueError, match="champion metrics have no roc_auc"):
        gate(auc(0.7), {"log_loss": 0.4}, auc(0.6), margin=0.01)


def test_headline_metrics_come_first_whatever_order_the_metrics_were_stored_in() -> None:
    stored = {"brier": 0.17, "log_loss": 0.52, "rows": 10.0, "roc_auc": 0.72, "pr_auc": 0.48, "zeta": 1.0}
    frame = leaderboard([("v1", "candidate", stored)])
    assert frame.columns == ["name", "role", "roc_auc", "pr_auc", "log_loss", "brier", "rows", "zeta"]
