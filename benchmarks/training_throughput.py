"""Training throughput: the entrypoint's training loop ÷ a bare PyTorch loop, and the epoch time.

    python -m benchmarks.training_throughput [--quick] [--training-set DIR] [--device auto|cpu|cuda]

Both loops train the same network (architecture, batch size and optimizer from
params.yaml) on the same train split, in one process, one after the other:

- entrypoint: `python -m ml.training.train` run in-process (`ml.training.train.main`); samples/s of each
  epoch's training loop as its timings.json records them (validation and checkpoint
  excluded), so the ratio shows what the loop's own machinery costs: the epoch's seeded order
  (chunks, then rows within a window), reading and expanding the encoded split a window at a
  time, one-cycle schedule, loss scaler, on-device loss sum (`benchmarks.training_scale` times
  the same entrypoint on 10 and 100 times this set);
- bare: the tensors already in memory and the plainest loop over them (random
  permutation, slice, forward, loss, backward, step), with autocast on CUDA as well.

Target: entrypoint ÷ bare >= 0.9 (higher is better). The second table is the wall time of
an epoch of the entrypoint (training loop and validation) on the CPU.
Without --training-set the script replays and builds the features of 2013 (--quick: the
first quarter) in a temporary folder with the real assets and snapshots them with the
default split (validation 31 days, test 61; --quick: 7 and 14).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
import yaml
from torch.nn import functional

from benchmarks.common import (
    BRONZE,
    FEATURES,
    FIRST_DAY,
    LAST_DAY,
    Report,
    arguments,
    day_of_year,
    new_lake,
    ratio,
    replay_landing,
)
from ml.evaluation.metrics import label_values
from ml.lake.tables import FEATURES_TABLE
from ml.training import train
from ml.training.model import ModelConfig, TabularNet
from ml.training.params import load_params
from ml.training.preprocess import Preprocessor
from ml.training.progress import device_name
from ml.training.stream import Batch
from ml.training.trainer import TrainParams
from ml.training.training_set import SplitSizes, split_by_time, write_snapshot

PROJECT = Path(__file__).resolve().parents[1]
TARGET = 0.9


def build_training_set(work: Path, quick: bool) -> Path:
    """A snapshot of real features made by the real assets: the year, or its first quarter."""
    last = day_of_year(90) if quick else LAST_DAY
    landing = replay_landing(work / "landing", FIRST_DAY, last)
    lake = new_lake(work, "lake", landing)
    lake.materialize(BRONZE, FIRST_DAY, last)
    lake.materialize(FEATURES, FIRST_DAY, last)
    sizes = SplitSizes(7, 14) if quick else SplitSizes(31, 61)
    parts = split_by_time(lake.store.read(FEATURES_TABLE), last, sizes)
    folder = work / "training_set"
    write_snapshot(parts, folder, {"feature_table": str(lake.lake_dir), "feature_table_version": -1}, last)
    return folder


def run_entrypoint(snapshot: Path, work: Path, section: dict[str, Any], device: str) -> dict[str, Any]:
    """One in-process run of the entrypoint with early stopping off; its history and wall time."""
    params = work / f"params-{device}.yaml"
    params.write_text(yaml.safe_dump({"train": section}))
    out = work / f"model-{device}"
    start = time.perf_counter()
    code = train.main(
        ["--training-set", str(snapshot), "--out", str(out), "--params", str(params), "--device", device]
    )
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"ml.training.train exited with {code}")
    history = json.loads((out / "timings.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"history": history, "wall": wall, "validation_auc": metrics["validation"]["roc_auc"]}


def bare_loop(snapshot: Path, section: dict[str, Any], device: torch.device, epochs: int) -> list[float]:
    """Samples/s per epoch of the plainest loop over in-memory tensors (one untimed warm-up epoch)."""
    params = TrainParams.from_section(section)
    manifest, paths = train.read_training_set(snapshot)
    frame = pl.read_parquet(paths["train"])
    preprocessor = Preprocessor.fit(frame, manifest["categorical"], manifest["numeric"])
    codes, numbers = preprocessor.transform(frame)
    data = Batch(
        torch.from_numpy(codes).to(device),
        torch.from_numpy(numbers).to(device),
        torch.from_numpy(label_values(frame, manifest["label"]).astype("float32")).to(device),
    )
    config = ModelConfig(
        tuple(preprocessor.cardinalities),
        preprocessor.numeric_width,
        params.embedding_dim,
        params.hidden_sizes,
        params.dropout,
    )
    torch.manual_seed(params.seed)
    model = TabularNet(config).to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    rates = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(data.rows, device=device)
        for first in range(0, data.rows, params.batch_size):
            index = order[first : first + params.batch_size]
            if index.numel() < 2:  # batch normalization cannot train on one row
                break
            with torch.autocast(device.type, enabled=amp):
                logits = model(data.categorical[index], data.numeric[index])
            loss = functional.binary_cross_entropy_with_logits(logits.float(), data.label[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if amp:
            torch.cuda.synchronize(device)
        rates.append(data.rows / (time.perf_counter() - start))
    return rates[1:]


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(min(values))}..{fmt.format(max(values))}" if len(values) > 1 else "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--training-set", type=Path, default=None, help="an existing snapshot folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs per loop (default 4, --quick 2)"
    )


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv, add_arguments)
    epochs = args.epochs or (2 if args.quick else 4)
    device = train.pick_device(args.device)
    section = {**load_params(PROJECT / "params.yaml")["train"], "max_epochs": epochs, "patience": epochs}
    report = Report("training_throughput", args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        snapshot = args.training_set or build_training_set(work, args.quick)
        runs = {device.type: run_entrypoint(snapshot, work, section, device.type)}
        bare = bare_loop(snapshot, section, device, epochs)
        if device.type != "cpu":
            runs["cpu"] = run_entrypoint(snapshot, work, section, "cpu")
        train_rows = json.loads((snapshot / "manifest.json").read_text())["splits"]["train"]["rows"]

    entry = [row["samples_per_second"] for row in runs[device.type]["history"]]
    value = statistics.median(entry) / statistics.median(bare)
    report.table(
        f"Training loop samples/s on {device_name(device)}, batch {section['batch_size']}, "
        f"{train_rows:,} train rows, median of {epochs} epochs",
        [
            {
                "loop": "entrypoint (ml.training.train)",
                "samples/s": f"{statistics.median(entry):,.0f}",
                "min..max": spread(entry),
            },
            {
                "loop": "bare PyTorch",
                "samples/s": f"{statistics.median(bare):,.0f}",
                "min..max": spread(bare),
            },
            {"loop": "entrypoint ÷ bare", "samples/s": ratio(value), "min..max": f"target >= {TARGET}"},
        ],
    )
    report.headline(
        "entrypoint ÷ bare training loop, samples/s", value, TARGET, "higher is better", at_least=True
    )
    cpu = runs["cpu"]
    seconds = [row["seconds"] for row in cpu["history"]]
    loop = [train_rows / row["samples_per_second"] for row in cpu["history"]]
    report.table(
        f"Entrypoint on the CPU ({torch.get_num_threads()} threads), {train_rows:,} train rows",
        [
            {
                "what": "epoch (training loop + validation)",
                "median": f"{statistics.median(seconds):.2f} s",
                "min..max": spread(seconds, "{:.2f}"),
            },
            {
                "what": "training loop alone",
                "median": f"{statistics.median(loop):.2f} s",
                "min..max": spread(loop, "{:.2f}"),
            },
            {
                "what": f"whole run ({epochs} epochs, preprocessing, ONNX export)",
                "median": f"{cpu['wall']:.1f} s",
                "min..max": "-",
            },
            {
                "what": "validation ROC AUC of that run",
                "median": f"{cpu['validation_auc']:.4f}",
                "min..max": "-",
            },
        ],
    )
    if value < TARGET:
        report.note(f"entrypoint ÷ bare is {value:.2f}, under the target {TARGET}")
    return report.finish(args.json)


if __name__ == "__main__":
    main()
