"""Plots: valid PNGs under fixed names, identical bytes for identical predictions, inline markdown."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from ml.evaluation.bootstrap import paired_bootstrap
from ml.evaluation.leaderboard import GateResult, GateSettings, gate
from ml.evaluation.plots import (
    PLOT_FILES,
    calibration_plot,
    interval_plot,
    png_markdown,
    precision_recall_plot,
    roc_plot,
    write_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    truth = rng.uniform(size=1000)
    y = (rng.uniform(size=truth.size) < truth).astype(int)
    return y, {"candidate": truth, "boosted_trees": np.sqrt(truth), "prior": np.full(truth.size, y.mean())}


@pytest.fixture(scope="module")
def gate_result(test_split: tuple[np.ndarray, dict[str, np.ndarray]]) -> GateResult:
    """The gate on the same predictions and a champion, the 1000 rows spread over 20 days."""
    y, predictions = test_split
    days = np.arange(y.size) % 20
    scored = {**predictions, "champion": predictions["boosted_trees"] ** 2}
    settings = GateSettings(0.005, 0.0, 0.03, 1000, 0.95, 0)
    return gate(paired_bootstrap(y, days, scored), 0.02, settings)


def test_each_plot_is_a_png(
    test_split: tuple[np.ndarray, dict[str, np.ndarray]], gate_result: GateResult
) -> None:
    y, predictions = test_split
    images = [plot(y, predictions) for plot in (roc_plot, precision_recall_plot, calibration_plot)]
    for image in [*images, interval_plot(gate_result)]:
        assert image.startswith(PNG_MAGIC) and len(image) > 5000


def test_plots_are_written_under_fixed_names_and_are_deterministic(
    test_split: tuple[np.ndarray, dict[str, np.ndarray]], gate_result: GateResult, tmp_path: Path
) -> None:
    y, predictions = test_split
    paths = write_plots(y, predictions, gate_result, tmp_path / "plots")
    assert {kind: p.name for kind, p in paths.items()} == PLOT_FILES
    first = {kind: p.read_bytes() for kind, p in paths.items()}
    assert all(data.startswith(PNG_MAGIC) for data in first.values())
    again = write_plots(y, predictions, gate_result, tmp_path / "plots")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(PLOT_FILES.values())
    assert {kind: p.read_bytes() for kind, p in again.items()} == first


def test_png_markdown_inlines_the_bytes_as_a_data_uri() -> None:
    image = PNG_MAGIC + b"rest of the image"
    markdown = png_markdown(image, alt="ROC")
    prefix = "![ROC](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == image
    with pytest.raises(ValueError, match="PNG"):
        png_markdown(b"GIF89a")


def test_bad_predictions_are_refused_before_drawing(
    test_split: tuple[np.ndarray, dict[str, np.ndarray]],
) -> None:
    y, predictions = test_split
    with pytest.raises(ValueError, match="empty"):
        roc_plot(y, {})
    with pytest.raises(ValueError, match="length mismatch"):
        calibration_plot(y, {"short": predictions["candidate"][:10]})
