"""ROC, precision-recall, reliability and gate-interval plots of models on one test split, as PNG bytes.

Figures are drawn on matplotlib's Agg canvas directly, not through pyplot: no
global figure state, no display needed, safe in a worker thread. The PNGs carry no
"Software" stamp, so the same predictions give the same bytes on any matplotlib
version that draws the same pixels. matplotlib and scikit-learn are imported when a plot is
drawn, not with this module: the code location imports it, and they take about 1.5 s.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.evaluation.bootstrap import Interval
from ml.evaluation.leaderboard import GateResult
from ml.evaluation.metrics import binary_metrics, calibration_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Predictions = Mapping[str, np.ndarray]
PLOT_FILES = {
    "roc": "roc.png",
    "precision_recall": "precision_recall.png",
    "calibration": "calibration.png",
    "auc_intervals": "auc_intervals.png",
}


def png(draw: Callable[[Figure], None]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(figure)
    draw(figure)
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _checked(y: np.ndarray, predictions: Predictions) -> dict[str, dict[str, float]]:
    """Metrics per model; also the input check (lengths, ranges, both classes) before drawing anything."""
    if not predictions:
        raise ValueError("no models to plot: predictions is empty")
    return {name: binary_metrics(y, p) for name, p in predictions.items()}


def roc_plot(y: np.ndarray, predictions: Predictions) -> bytes:
    from sklearn.metrics import roc_curve

    metrics = _checked(y, predictions)

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        for name, p in predictions.items():
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{name} (AUC {metrics[name]['roc_auc']:.3f})")
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
        ax.set(
            xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1)
        )
        ax.legend(loc="lower right")

    return png(draw)


def precision_recall_plot(y: np.ndarray, predictions: Predictions) -> bytes:
    from sklearn.metrics import precision_recall_curve

    metrics = _checked(y, predictions)
    base_rate = float(np.mean(np.asarray(y, dtype=np.float64)))

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        for name, p in predictions.items():
            precision, recall, _ = precision_recall_curve(y, p)
            ax.plot(
                recall, precision, drawstyle="steps-post", label=f"{name} (AP {metrics[name]['pr_auc']:.3f})"
            )
        ax.axhline(base_rate, linestyle=":", color="grey", label=f"delay rate {base_rate:.3f}")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper right")

    return png(draw)


def calibration_plot(y: np.ndarray, predictions: Predictions, bins: int = 10) -> bytes:
    """Observed delay rate against mean prediction per quantile bin (see `calibration_table`)."""
    _checked(y, predictions)
    tables = {name: calibration_table(y, p, bins) for name, p in predictions.items()}

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        for name, table in tables.items():
            ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
        ax.set(
            xlabel="mean predicted delay probability",
            ylabel="observed delay rate",
            title=f"Reliability ({bins} quantile bins)",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(loc="upper left")

    return png(draw)


def _interval_bars(ax: Axes, intervals: Sequence[Interval], colours: Sequence[str]) -> None:
    """One point with its interval per row; a percentile interval can miss its point, so bars are clipped."""
    for row, (interval, colour) in enumerate(zip(intervals, colours, strict=True)):
        below, above = max(interval.estimate - interval.low, 0.0), max(interval.high - interval.estimate, 0.0)
        ax.errorbar(interval.estimate, row, xerr=[[below], [above]], fmt="o", capsize=4, color=colour)
    ax.set_ylim(len(intervals) - 0.5, -0.5)


def interval_plot(result: GateResult) -> bytes:
    """Each model's test ROC AUC with its interval, and the candidate's leads against -margin.

    The upper panel says how precisely the test split measures any one model; the lower
    one is the gate itself: a lead passes when its whole bar lies right of its margin mark.
    """
    aucs = result.aucs()
    comparisons = list(result.versus.values())

    def draw(figure: Figure) -> None:
        top, bottom = figure.subplots(2, 1, height_ratios=[len(aucs), len(comparisons)])
        _interval_bars(top, list(aucs.values()), ["tab:blue"] * len(aucs))
        top.set(
            yticks=range(len(aucs)),
            yticklabels=list(aucs),
            xlabel="test ROC AUC",
            title=f"ROC AUC, {result.bootstrap.confidence:.0%} day-bootstrap intervals",
        )
        _interval_bars(
            bottom,
            [c.difference for c in comparisons],
            ["tab:green" if c.passed else "tab:red" for c in comparisons],
        )
        for row, c in enumerate(comparisons):
            bottom.plot([-c.margin] * 2, [row - 0.35, row + 0.35], color="black", linestyle="--")
        bottom.axvline(0.0, color="grey", linestyle=":")
        bottom.set(
            yticks=range(len(comparisons)),
            yticklabels=[f"vs {c.other}" for c in comparisons],
            xlabel="candidate - other ROC AUC (dashed: -margin)",
            title="Gate: the lower bound must clear -margin",
        )

    return png(draw)


def write_plots(y: np.ndarray, predictions: Predictions, gate: GateResult, folder: Path) -> dict[str, Path]:
    """All plots into `folder` under fixed names (`PLOT_FILES`), so a rerun replaces them."""
    images = {
        "roc": roc_plot(y, predictions),
        "precision_recall": precision_recall_plot(y, predictions),
        "calibration": calibration_plot(y, predictions),
        "auc_intervals": interval_plot(gate),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, data in images.items():
        path = folder / PLOT_FILES[kind]
        path.write_bytes(data)
        paths[kind] = path
    return paths


def png_markdown(png_bytes: bytes, alt: str = "plot") -> str:
    """A markdown image with the PNG inlined as a data URI: Dagster metadata cannot link to local files."""
    if not png_bytes.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not PNG bytes (the PNG signature is missing)")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png_bytes).decode('ascii')})"
