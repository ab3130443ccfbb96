"""The quality table of the newest evaluated model: test ROC AUC with its interval, probability quality, the gate.

    python benchmarks/model_quality.py [--data-dir .data]       (after `make demo`)
    python /path/to/benchmarks/model_quality.py --data-dir /path/to/.data

Reads what `training/evaluation` stored in the registry (`registry/models`): every model's
test ROC AUC with the 95% interval of the paired day bootstrap, PR AUC, log loss, Brier score
and expected calibration error; the candidate's differences with the tuned trees and the
champion with their intervals and margins; the trees' tuned settings and validation AUC; and
which split chose what. It recomputes nothing, so it prints exactly what the gate decided on.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from any folder

import argparse  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from ml.lake.delta import DeltaStore  # noqa: E402
from ml.registry.model_registry import ModelRegistry  # noqa: E402
from ml.text_tables import text_table  # noqa: E402

COLUMNS = ("roc_auc", "pr_auc", "log_loss", "brier", "expected_calibration_error", "mean_prediction")


def model_row(name: str, metrics: dict[str, Any]) -> dict[str, str]:
    interval = (
        f"[{metrics['roc_auc_low']:.4f}, {metrics['roc_auc_high']:.4f}]" if "roc_auc_low" in metrics else "-"
    )
    return {
        "model": name,
        **{k: f"{metrics[k]:.4f}" for k in COLUMNS[:1]},
        "95% interval": interval,
        **{k: f"{metrics[k]:.4f}" for k in COLUMNS[1:] if k in metrics},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/model_quality.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("PLATFORM_DATA_DIR", ROOT / ".data")),
        help="the platform's data folder (default: PLATFORM_DATA_DIR, else .data of this repository)",
    )
    args = parser.parse_args(argv)
    model = ModelRegistry(DeltaStore(str(args.data_dir / "lake"))).latest_evaluated()
    if model is None:
        raise SystemExit("model_quality: no evaluated model in the registry (run `make demo` first)")
    m = model.metrics
    rows = [model_row(f"v{model.version} ({model.status})", m["test"])]
    if m.get("champion"):
        rows.append(model_row("champion", m["champion"]))
    rows += [model_row(name, metrics) for name, metrics in m["baselines"].items()]
    print(f"test split: {m['test']['rows']} flights, {m['gate'].get('days', '?')} days\n")
    print(text_table(rows))
    gate = m["gate"]
    comparisons = [
        {
            "candidate minus": other,
            "difference": f"{c['diff']:+.4f}",
            "95% interval": f"[{c['low']:+.4f}, {c['high']:+.4f}]",
            "must be above": f"{0.0 - c['margin']:+.4f}",
            "passed": str(c["passed"]),
        }
        for other, c in gate["comparisons"].items()
        if c is not None
    ]
    calibration = gate["calibration"]
    print(
        f"\ngate ({gate['resamples']} day resamples, seed {gate['seed']}): {'passed' if gate['passed'] else 'REFUSED'}"
    )
    print(text_table(comparisons))
    print(
        f"calibration error {calibration['expected_calibration_error']:.4f}, bound {calibration['max']:.4f}: "
        f"{'passed' if calibration['passed'] else 'failed'}"
    )
    trees = m["baselines"].get("boosted_trees", {})
    if "settings" in trees:
        print(f"\ntuned trees: {trees['settings']}, validation ROC AUC {trees['validation_auc']:.4f}")
    training = m.get("training", {})
    if "calibration" in training:
        print(
            f"network: best epoch {training['best_epoch']} of {training['epochs_run']}, validation ROC AUC "
            f"{training['validation']['roc_auc']:.4f}, temperature {training['calibration']['temperature']:.4f}"
        )
    print(f"selection: {m.get('selection')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
