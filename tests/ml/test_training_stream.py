"""Training streams its batches: every row once per epoch, bounded windows, the same statistics, the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from ml.registry.artifacts import UNPINNED
from ml.training import train
from ml.training.encoded import (
    DEFAULT_MEMORY_BUDGET,
    FIT_BATCH,
    Block,
    FileStore,
    ResidentStore,
    Shape,
    parquet_batches,
    parse_budget,
    place,
)
from ml.training.preprocess import Preprocessor
from ml.training.probe import select_rows
from ml.training.progress import ConsoleReporter
from ml.training.stream import Layout, SplitStream, batch_sizes

CATEGORICAL = ["carrier", "origin"]
NUMERIC = ["distance", "temp", "precip", "flat"]
LABEL = "is_delayed"
PARAMS = {
    "seed": 0,
    "batch_size": 256,
    "max_epochs": 2,
    "patience": 2,
    "learning_rate": 0.003,
    "weight_decay": 0.01,
    "embedding_dim": 4,
    "hidden_sizes": [16],
    "dropout": 0.1,
}
SMALL_LAYOUT = Layout(chunk_rows=128, window_chunks=6)
"""768-row windows: the synthetic train split of 5,000 rows takes 7 of them."""


def flights(rows: int, seed: int) -> pl.DataFrame:
    """Feature-like rows: categories and numbers with nulls, a long-tailed column, a learnable label."""
    rng = np.random.default_rng(seed)
    distance = rng.integers(100, 3000, rows)
    temp = np.where(rng.random(rows) < 0.1, np.nan, rng.normal(55, 18, rows))
    precip = np.where(rng.random(rows) < 0.8, 0.0, rng.exponential(0.1, rows))
    carrier = rng.choice(["UA", "AA", "DL", "B6", "EV"], rows, p=[0.4, 0.2, 0.2, 0.15, 0.05])
    score = 0.002 * (distance - 1500) + 8 * precip + rng.normal(0, 1, rows)
    return pl.DataFrame(
        {
            "carrier": carrier,
            "origin": pl.Series(rng.choice(["EWR", "JFK", "LGA", None], rows), dtype=pl.String),
            "distance": pl.Series(distance, dtype=pl.Int32),
            "temp": pl.Series(temp).fill_nan(None),
            "precip": precip,
            "flat": np.full(rows, 5.0),
            LABEL: score > 0.8,
        }
    )


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot folder of the entrypoint's format, its Parquet files cut into several row groups."""
    folder = tmp_path_factory.mktemp("stream") / "training_set"
    folder.mkdir()
    for name, rows, seed in (("train", 5000, 1), ("validation", 1500, 2)):
        flights(rows, seed).write_parquet(folder / f"{name}.parquet", row_group_size=900, statistics=False)
    (folder / "test.parquet").write_bytes(b"not parquet: training must not open it")
    manifest = {"label": LABEL, "categorical": CATEGORICAL, "numeric": NUMERIC, "splits": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def numbered_block(rows: int) -> Block:
    """Rows whose first number is their own row number, so a batch says which rows it holds."""
    scaled = np.zeros((rows, 2), dtype=np.float32)
    scaled[:, 0] = np.arange(rows)
    return Block(np.zeros((rows, 1), dtype=np.int32), scaled, (np.arange(rows) % 2).astype(np.uint8))


def as_is(scaled: np.ndarray, out: np.ndarray) -> None:
    """The numbers as they are, no indicators: the first one stays the row number."""
    np.copyto(out, scaled)


def epoch_rows(stream: SplitStream, batch_size: int, epoch: int) -> list[np.ndarray]:
    return [b.numeric[:, 0].numpy().astype(np.int64) for b in stream.epoch(batch_size, seed=3, epoch=epoch)]


@pytest.mark.parametrize("where", ["memory", "files"])
def test_each_epoch_streams_every_row_once_within_a_bounded_window(where: str, tmp_path: Path) -> None:
    rows, batch_size = 10_007, 300
    shape = Shape(categorical=1, numeric=2, width=2)
    store = (
        ResidentStore(rows, shape, as_is)
        if where == "memory"
        else FileStore(rows, shape, as_is, folder=tmp_path)
    )
    block = numbered_block(rows)
    for start in range(0, rows, 4096):  # written in pieces, as the encoding pass does
        piece = slice(start, start + 4096)
        store.write(start, Block(block.codes[piece], block.scaled[piece], block.label[piece]))
    stream = SplitStream(store, torch.device("cpu"), SMALL_LAYOUT)

    first = epoch_rows(stream, batch_size, epoch=1)
    assert [len(b) for b in first] == batch_sizes(rows, batch_size)
    assert np.array_equal(np.sort(np.concatenate(first)), np.arange(rows))
    if where == "files":
        # The reader's own count: a window, plus the rows of a batch begun in the window before it.
        assert SMALL_LAYOUT.window_rows < stream.peak_rows <= SMALL_LAYOUT.window_rows + batch_size
    else:
        assert stream.peak_rows == rows  # resident: held whole, as the budget allowed
    assert stream.held_rows == 0

    again, second = epoch_rows(stream, batch_size, epoch=1), epoch_rows(stream, batch_size, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    assert np.array_equal(np.sort(np.concatenate(second)), np.arange(rows))
    # Chunks are shuffled too: the first batch mixes rows from all over the split, not one chunk.
    assert np.ptp(first[0]) > rows / 2

    stream.peak_rows = 0
    evaluated = [b.numeric[:, 0].numpy().copy() for b in stream.sequential(1000)]  # valid until the next
    assert np.array_equal(np.concatenate(evaluated), np.arange(rows))
    assert stream.peak_rows == (1000 if where == "files" else rows)
    if isinstance(store, FileStore):
        store.close()


def test_both_places_give_the_same_batches(tmp_path: Path) -> None:
    rows, shape = 5_000, Shape(categorical=1, numeric=2, width=2)
    resident, files = ResidentStore(rows, shape, as_is), FileStore(rows, shape, as_is, folder=tmp_path)
    for store in (resident, files):
        store.write(0, numbered_block(rows))
    streams = [SplitStream(store, torch.device("cpu"), SMALL_LAYOUT) for store in (resident, files)]
    for left, right in zip(*(s.epoch(256, seed=0, epoch=4) for s in streams), strict=True):
        assert torch.equal(left.numeric, right.numeric) and torch.equal(left.label, right.label)
        assert torch.equal(left.categorical, right.categorical) and left.categorical.dtype == torch.int64
    files.close()


@pytest.mark.parametrize("where", ["memory", "files"])
def test_a_split_within_one_window_trains_in_the_order_the_in_memory_loop_drew(
    where: str, tmp_path: Path
) -> None:
    """Below a window (the 2013 set) the epoch is the old loop's: `randperm(rows)` from the epoch's
    generator, cut by `tensor_split`. With the fit in one batch, models registered before training
    streamed retrain to the same bytes."""
    rows, batch_size, seed, epoch = 5_000, 256, 7, 3
    shape = Shape(categorical=1, numeric=2, width=2)
    store = (
        ResidentStore(rows, shape, as_is)
        if where == "memory"
        else FileStore(rows, shape, as_is, folder=tmp_path)
    )
    store.write(0, numbered_block(rows))
    stream = SplitStream(store, torch.device("cpu"))  # the default layout: 5,000 rows are one window
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    old = torch.randperm(rows, generator=generator).tensor_split(-(-rows // batch_size))
    new = [b.numeric[:, 0].numpy().astype(np.int64) for b in stream.epoch(batch_size, seed, epoch)]
    assert [len(b) for b in new] == [len(b) for b in old]
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(old, new, strict=True))
    if isinstance(store, FileStore):
        store.close()


def test_a_train_split_within_the_fit_batch_is_fitted_to_numpys_bits(snapshot: Path) -> None:
    frame = pl.read_parquet(snapshot / "train.parquet")
    assert frame.height <= FIT_BATCH
    whole = Preprocessor.fit(frame, CATEGORICAL, NUMERIC)
    read = Preprocessor.fit_batches(
        lambda columns: parquet_batches(snapshot / "train.parquet", columns, FIT_BATCH), CATEGORICAL, NUMERIC
    )
    assert read.to_json() == whole.to_json()


def test_streamed_statistics_equal_the_in_memory_ones(snapshot: Path) -> None:
    frame = pl.read_parquet(snapshot / "train.parquet")
    in_memory = Preprocessor.fit(frame, CATEGORICAL, NUMERIC)
    streamed = Preprocessor.fit_batches(
        lambda columns: parquet_batches(snapshot / "train.parquet", columns, batch_rows=700),
        CATEGORICAL,
        NUMERIC,
    )
    assert streamed.vocabularies == in_memory.vocabularies
    assert streamed.lows == in_memory.lows and streamed.highs == in_memory.highs
    assert streamed.log_scaled == in_memory.log_scaled == ("precip",)
    assert streamed.missing_indicators == in_memory.missing_indicators
    for column in NUMERIC:
        assert streamed.means[column] == pytest.approx(in_memory.means[column], rel=1e-12, abs=1e-12)
        assert streamed.stds[column] == pytest.approx(in_memory.stds[column], rel=1e-12)
    # In memory, the statistics are numpy's own, to the bit (what the preprocessor always computed).
    for column in NUMERIC:
        known = frame[column].cast(pl.Float64).drop_nulls().to_numpy()
        known = np.log1p(known) if column in in_memory.log_scaled else known
        assert in_memory.means[column] == float(known.mean())
        assert in_memory.stds[column] == (float(known.std()) or 1.0)
    counts = frame["carrier"].value_counts().sort(["count", "carrier"], descending=[True, False])
    assert in_memory.vocabularies["carrier"] == counts["carrier"].to_list()


def test_the_probe_rows_are_those_of_the_whole_frame(snapshot: Path) -> None:
    validation = pl.read_parquet(snapshot / "validation.parquet")
    chosen = {int(i) for i in np.round(np.linspace(0, validation.height - 1, 256))}
    for column in CATEGORICAL:
        indexed = validation.with_row_index("i")
        chosen.update(indexed.group_by(column, maintain_order=True).agg(pl.col("i").first())["i"].to_list())
    expected = validation[sorted(chosen)]
    assert select_rows(pl.scan_parquet(snapshot / "validation.parquet"), CATEGORICAL).equals(expected)


def pinned(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in UNPINNED}


def test_streamed_runs_give_identical_models_and_so_does_memory(snapshot: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": PARAMS}))
    runs = {}
    for name, budget in (("files_a", 0), ("files_b", 0), ("memory", DEFAULT_MEMORY_BUDGET)):
        out = tmp_path / name
        train.run(snapshot, out, params, "cpu", ConsoleReporter(), memory_budget=budget, layout=SMALL_LAYOUT)
        runs[name] = out
    timings = {name: json.loads((out / "timings.json").read_text()) for name, out in runs.items()}
    assert [row["data"] for row in timings["files_a"]] == ["files", "files"]
    assert [row["data"] for row in timings["memory"]] == ["memory", "memory"]
    files = pinned(runs["files_a"])
    assert {"model.pt", "model.onnx", "preprocess.json", "metrics.json", "probe.parquet"} <= set(files)
    assert pinned(runs["files_b"]) == files
    assert pinned(runs["memory"]) == files, "where the encoded splits live must not change the model"


def test_the_budget_keeps_the_year_in_memory_and_a_hundred_years_in_files() -> None:
    assert parse_budget("4GiB") == DEFAULT_MEMORY_BUDGET == parse_budget(str(4 * 2**30))
    assert parse_budget("512 MiB") == 2**29 and parse_budget("0") == 0
    assert parse_budget("32Gi") == 32 * 2**30 and parse_budget("1536Mi") == 1536 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        parse_budget("4 gigs")
    shape = Shape(categorical=3, numeric=30, width=60)
    year = 244_737 + 28_618
    assert place(year, shape, DEFAULT_MEMORY_BUDGET).in_memory
    assert place(10 * year, shape, DEFAULT_MEMORY_BUDGET).in_memory
    assert place(100 * year, shape, DEFAULT_MEMORY_BUDGET).where == "files"
