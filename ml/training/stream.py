"""An epoch's batches streamed from an encoded split: a seeded order of chunks, shuffled a window at a time.

The order of an epoch: the split's rows are cut into chunks of `chunk_rows` consecutive rows; a
generator seeded by (seed, epoch) permutes the chunks, takes them `window_chunks` at a time and
permutes the rows of each window; batches are consecutive slices of that sequence, near-equal in
size (as `torch.tensor_split` cuts), so none is a lone row that batch normalization cannot train
on. Read from files, only one window is held, with the rows of a batch begun in the window before
it, so memory does not grow with the split (`SplitStream.peak_rows` counts what was held).

What this loses against a full permutation of the split: two rows can share a batch only if
their chunks fall in the same window, and the rows of one chunk (consecutive in the snapshot's
key order: the same day and carrier) always do. A batch still mixes rows of up to
`window_chunks` chunks drawn from the whole split, and a split no larger than a window (the 2013
training set, 245k rows, against 524k) is a single window: a full permutation, the same one the
in-memory loop drew from the epoch's generator (`torch.randperm(rows)`).

The order depends on (seed, epoch, rows, layout) alone, not on where the split is stored, so an
in-memory and a file-backed run train the same model, and a resumed epoch sees the same batches.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.training.encoded import (
    FIT_BATCH,
    FileStore,
    Inputs,
    Placement,
    ResidentStore,
    Store,
    encoded_splits,
    parquet_batches,
    parquet_rows,
    place,
    shape_of,
)
from ml.training.preprocess import Preprocessor

CHUNK_ROWS = 1024
"""Consecutive rows read together: one positioned read per array, about 130 KB."""
WINDOW_CHUNKS = 512
"""Chunks shuffled together: a window of 524,288 rows, about 210 MB held while it is read from
files and trained on."""


@dataclass(frozen=True)
class Layout:
    """How an epoch's order is cut: part of what defines the model, like the seed."""

    chunk_rows: int = CHUNK_ROWS
    window_chunks: int = WINDOW_CHUNKS

    @property
    def window_rows(self) -> int:
        return self.chunk_rows * self.window_chunks


@dataclass(frozen=True)
class Batch:
    """Model inputs and labels on the training device."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    label: torch.Tensor

    @property
    def rows(self) -> int:
        return int(self.label.shape[0])

    def take(self, index: torch.Tensor) -> Batch:
        return Batch(self.categorical[index], self.numeric[index], self.label[index])

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(self.categorical[start:stop], self.numeric[start:stop], self.label[start:stop])

    @staticmethod
    def join(parts: Sequence[Batch]) -> Batch:
        if len(parts) == 1:
            return parts[0]
        return Batch(
            torch.cat([p.categorical for p in parts]),
            torch.cat([p.numeric for p in parts]),
            torch.cat([p.label for p in parts]),
        )


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return math.ceil(rows / batch_size)


def batch_sizes(rows: int, batch_size: int) -> list[int]:
    """Near-equal batch sizes summing to `rows`, larger ones first (as `torch.tensor_split` cuts)."""
    steps = steps_per_epoch(rows, batch_size)
    base, extra = divmod(rows, steps)
    return [base + 1] * extra + [base] * (steps - extra)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """An epoch's own generator: its order is the same whether the run was resumed or not."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def windows(
    rows: int, layout: Layout, generator: torch.Generator
) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """Each window's row ranges (its chunks, in permuted order) and the permutation of its rows."""
    chunks = math.ceil(rows / layout.chunk_rows)
    if chunks <= layout.window_chunks:
        # One window: a full permutation of the split, drawn as the in-memory loop drew it, so a
        # model trained on a split of this size before streaming existed trains the same again.
        yield [(0, rows)], torch.randperm(rows, generator=generator)
        return
    order = torch.randperm(chunks, generator=generator).tolist()
    for first in range(0, chunks, layout.window_chunks):
        ranges = [
            (c * layout.chunk_rows, min((c + 1) * layout.chunk_rows, rows))
            for c in order[first : first + layout.window_chunks]
        ]
        yield ranges, torch.randperm(sum(hi - lo for lo, hi in ranges), generator=generator)


class SplitStream:
    """An encoded split read as device tensors: whole when it is resident, else a window at a time.

    A resident split (`ResidentStore`) goes to the device once and every batch is gathered from
    it, as the in-memory loop always did: the window only says which rows, in which order. A
    split in files (`FileStore`) is read and expanded a window at a time. `held_rows` counts the
    rows held now, `peak_rows` the most held: the whole split when resident; from files, at most
    a window and the rows of a batch begun in the window before it (one batch in evaluation).
    """

    def __init__(self, store: Store, device: torch.device, layout: Layout | None = None) -> None:
        self.store, self.device = store, device
        self.layout = layout or Layout()
        self.held_rows = self.peak_rows = 0

    @property
    def rows(self) -> int:
        return self.store.rows

    @functools.cached_property
    def resident(self) -> Batch:
        """A resident split on the device, copied there once (on the CPU, the arrays themselves)."""
        if not isinstance(self.store, ResidentStore):
            raise TypeError("only a resident split is held whole")
        return self._tensors(self.store.inputs)

    def epoch(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        """The batches of one training epoch, each row once, in the epoch's seeded order."""
        generator = epoch_generator(seed, epoch)
        sizes = iter(batch_sizes(self.rows, batch_size))
        need, parts = next(sizes), list[Batch]()
        for ranges, order in windows(self.rows, self.layout, generator):
            carried = sum(p.rows for p in parts)
            window, index = self._window(ranges, order, carried)
            at = 0
            while at < index.numel():
                take = min(need - carried, index.numel() - at)
                parts.append(window.take(index[at : at + take]))
                at, carried = at + take, carried + take
                if carried == need:
                    yield Batch.join(parts)
                    need, parts, carried = next(sizes, 0), [], 0
            del window, index  # before the next window is read, not after
            self._hold(carried)
        self._hold(0)

    def sequential(self, batch_rows: int) -> Iterator[Batch]:
        """The split in file order, `batch_rows` at a time: evaluation. A batch is valid until the next."""
        for start in range(0, self.rows, batch_rows):
            stop = min(start + batch_rows, self.rows)
            if isinstance(self.store, FileStore):
                self._hold(stop - start)
                yield self._tensors(self.store.read([(start, stop)]))
            else:
                self._hold(self.rows)
                yield self.resident.slice(start, stop)
        self._hold(0)

    def _window(
        self, ranges: list[tuple[int, int]], order: torch.Tensor, carried: int
    ) -> tuple[Batch, torch.Tensor]:
        """The tensors a window's batches are gathered from, and the indices into them in the window's order."""
        if isinstance(self.store, FileStore):
            window = self._tensors(self.store.read(ranges))
            self._hold(window.rows + carried)
            return window, order.to(self.device)
        self._hold(self.rows)
        return self.resident, torch.from_numpy(_range_rows(ranges))[order].to(self.device)

    def _hold(self, rows: int) -> None:
        self.held_rows = rows
        self.peak_rows = max(self.peak_rows, rows)

    def _tensors(self, inputs: Inputs) -> Batch:
        """On the CPU these share the arrays' memory; on a GPU they are one copy each."""
        return Batch(
            torch.from_numpy(inputs.codes).to(self.device),
            torch.from_numpy(inputs.numbers).to(self.device),
            torch.from_numpy(inputs.label).to(self.device),
        )


def _range_rows(ranges: list[tuple[int, int]]) -> np.ndarray:
    """The row numbers of consecutive ranges, concatenated (int64)."""
    lows = np.array([lo for lo, _ in ranges], dtype=np.int64)
    lengths = np.array([hi - lo for lo, hi in ranges], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(lows - starts, lengths)


@contextmanager
def streamed_splits(
    paths: dict[str, Path],
    manifest: dict[str, Any],
    device: torch.device,
    memory_budget: int,
    layout: Layout | None,
    report: Callable[[str], None],
) -> Iterator[tuple[Preprocessor, Placement, dict[str, SplitStream]]]:
    """Fit the preprocessor on train and encode both splits, each read one Parquet batch at a time."""
    started = time.perf_counter()
    categorical, numeric = manifest["categorical"], manifest["numeric"]
    preprocessor = Preprocessor.fit_batches(
        lambda columns: parquet_batches(paths["train"], columns, FIT_BATCH), categorical, numeric
    )
    rows = sum(parquet_rows(path) for path in paths.values())
    placement = place(rows, shape_of(preprocessor), memory_budget)
    with encoded_splits(paths, preprocessor, manifest["label"], placement) as stores:
        report(
            f"encoded {rows:,} rows in {placement.where} ({placement.resident_bytes / 2**20:,.0f} MiB as "
            f"model inputs, memory budget {placement.budget_bytes / 2**30:.2f} GiB) in "
            f"{time.perf_counter() - started:.1f}s"
        )
        yield (
            preprocessor,
            placement,
            {name: SplitStream(store, device, layout) for name, store in stores.items()},
        )
