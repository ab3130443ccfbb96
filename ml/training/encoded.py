"""Splits encoded once, held as the model's inputs in memory or compactly in files, read back by row ranges.

Encoding a feature frame (`Preprocessor.encode`) runs at about a million rows a second on a
CPU core, no faster than the network trains on one, so a loop that decoded and encoded the
snapshot's Parquet every epoch would spend half its time there. Training instead reads each
split once, one Parquet batch at a time, and keeps the result in one of two places, chosen by
size alone (`place`):

- in memory (`ResidentStore`), as the model's inputs themselves (int64 codes, float32 numbers
  with their missing indicators, float32 labels: 268 bytes a row on the platform's 3
  categorical and 30 numeric features), when that fits in a share of the memory budget. The
  epoch then gathers its batches from these arrays, as the in-memory loop always did;
- in unnamed temporary files (`FileStore`, under TMPDIR), compactly: int32 codes, float32
  standardized numbers with NaN for a missing value, a uint8 label (133 bytes a row). An epoch
  reads a window of row ranges at a time with positioned reads into fresh buffers and expands
  it (`Preprocessor.inputs`). The files are not memory-mapped: the pages of a mapping count in
  the process's resident set as an epoch touches them, up to the whole file, while a read leaves
  them in the page cache, which the kernel can take back.

Both hold the same values, so the batches, hence the model, do not depend on where they live.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from ml.evaluation.metrics import label_values
from ml.training.preprocess import Preprocessor

ENCODE_BATCH = 65_536
"""Rows per Parquet batch read for fitting and encoding: what those passes hold at a time."""
FIT_BATCH = 1 << 19
"""Rows per batch read to fit the preprocessor: a train split up to this size (the 2013 set, 245k
rows) is fitted in one batch, so its statistics are numpy's over the whole column, to the bit, as
they were before training streamed; a larger one merges batch moments (`ml.training.moments`).
About 150 MB held at a time on the platform's 33 feature columns."""
DEFAULT_MEMORY_BUDGET = 4 * 2**30
"""Bytes the training process may use (a pod's memory limit), unless told otherwise."""
DATA_SHARE = 0.5
"""Share of the budget the splits may take in memory as model inputs: the rest is for the process
itself (torch, polars and pyarrow take about 430 MB before any data), a Parquet batch being
encoded, evaluation and export. On 4 GiB the 2013 training set (73 MB as model inputs) and 10
times it stay in memory; 100 times it (about 7 GB) goes to files."""
BUDGET_UNITS = {
    "": 1,
    "b": 1,
    **{f"{prefix}{suffix}": 2 ** (10 * (k + 1)) for k, prefix in enumerate("kmgt") for suffix in ("ib", "i")},
}
"""Binary units, spelled as in "4GiB" or as a Kubernetes memory limit ("32Gi")."""


def parse_budget(text: str) -> int:
    """Bytes from "4GiB", "32Gi", "512MiB", "1073741824" (binary units; 0 puts the splits in files)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in BUDGET_UNITS:
        raise ValueError(
            f"memory budget {text!r} is not a size such as 4GiB, 32Gi, 512MiB or a number of bytes"
        )
    return int(float(match.group(1)) * BUDGET_UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class Block:
    """Encoded rows: codes (int32 [n, C]), standardized numbers (float32 [n, F], NaN where missing), labels."""

    codes: np.ndarray
    scaled: np.ndarray
    label: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.label.shape[0])


@dataclass(frozen=True)
class Inputs:
    """Model inputs: codes (int64 [n, C]), numbers (float32 [n, W], indicators included), labels (float32 [n])."""

    codes: np.ndarray
    numbers: np.ndarray
    label: np.ndarray


@dataclass(frozen=True)
class Shape:
    """Columns of an encoded row (categorical, numeric) and of the model's input (width), and their bytes."""

    categorical: int
    numeric: int
    width: int

    @property
    def file_row_bytes(self) -> int:
        return 4 * self.categorical + 4 * self.numeric + 1

    @property
    def resident_row_bytes(self) -> int:
        return 8 * self.categorical + 4 * self.width + 4

    def empty(self, rows: int) -> Block:
        return Block(
            np.empty((rows, self.categorical), dtype=np.int32),
            np.empty((rows, self.numeric), dtype=np.float32),
            np.empty(rows, dtype=np.uint8),
        )

    def inputs(self, rows: int) -> Inputs:
        return Inputs(
            np.empty((rows, self.categorical), dtype=np.int64),
            np.empty((rows, self.width), dtype=np.float32),
            np.empty(rows, dtype=np.float32),
        )


Expand = Callable[[np.ndarray, np.ndarray], object]
"""Writes the model's numbers for standardized numbers with NaN for missing into an array
(`Preprocessor.inputs(scaled, out)`)."""


class ResidentStore:
    """The split as the model's inputs in this process's memory, expanded as each batch is encoded."""

    def __init__(self, rows: int, shape: Shape, expand: Expand) -> None:
        self.rows, self.expand = rows, expand
        self.inputs = shape.inputs(rows)

    def write(self, start: int, block: Block) -> None:
        end = start + block.rows
        self.inputs.codes[start:end] = block.codes
        self.expand(block.scaled, self.inputs.numbers[start:end])
        self.inputs.label[start:end] = block.label


class FileStore:
    """The encoded split as three unnamed temporary files of fixed-width rows (codes, numbers, labels).

    Unnamed (`tempfile.TemporaryFile`: no directory entry on Linux), so the kernel frees them when
    the process ends, however it ends: a run killed mid-epoch leaves no gigabytes behind in TMPDIR.
    """

    def __init__(self, rows: int, shape: Shape, expand: Expand, folder: Path | None = None) -> None:
        self.rows, self.shape, self.expand = rows, shape, expand
        self.buffers: tuple[Block, Inputs] | None = None
        # Owned by the store: `close` closes them.
        self.files = [tempfile.TemporaryFile(prefix="ml-training-", dir=folder) for _ in range(3)]  # noqa: SIM115
        self.fds = [file.fileno() for file in self.files]

    def write(self, start: int, block: Block) -> None:
        for fd, array in zip(self.fds, _arrays(block), strict=True):
            view, offset = memoryview(np.ascontiguousarray(array)).cast("B"), start * _row_width(array)
            while view.nbytes:
                done = os.pwrite(fd, view, offset)
                view, offset = view[done:], offset + done

    def read(self, ranges: Sequence[tuple[int, int]]) -> Inputs:
        """The model's inputs for these row ranges, in their order: positioned reads, then expansion.

        The arrays are this store's buffers, overwritten by its next read (fresh ones each time cost
        about a third of a window's read in page faults): keep a copy of what must outlive it.
        """
        block, inputs = self._buffers(sum(hi - lo for lo, hi in ranges))
        for fd, array in zip(self.fds, _arrays(block), strict=True):
            width, view, at = _row_width(array), memoryview(array).cast("B"), 0
            for lo, hi in ranges:
                _read_exactly(fd, view[at : at + (hi - lo) * width], lo * width)
                at += (hi - lo) * width
        np.copyto(inputs.codes, block.codes)
        self.expand(block.scaled, inputs.numbers)
        np.copyto(inputs.label, block.label)
        return inputs

    def _buffers(self, rows: int) -> tuple[Block, Inputs]:
        """Views of `rows` rows of the read buffers, which grow to the largest read asked for."""
        if self.buffers is None or self.buffers[0].rows < rows:
            self.buffers = (self.shape.empty(rows), self.shape.inputs(rows))
        block, inputs = self.buffers
        return (
            Block(block.codes[:rows], block.scaled[:rows], block.label[:rows]),
            Inputs(inputs.codes[:rows], inputs.numbers[:rows], inputs.label[:rows]),
        )

    def close(self) -> None:
        for file in self.files:
            file.close()


def _read_exactly(fd: int, view: memoryview, offset: int) -> None:
    while view.nbytes:
        got = os.preadv(fd, [view], offset)
        if got == 0:
            raise OSError(f"encoded split file ended early at byte {offset}")
        view, offset = view[got:], offset + got


def _row_width(array: np.ndarray) -> int:
    """Bytes of one row of a [n] or [n, k] array."""
    return array.itemsize * (array.shape[1] if array.ndim == 2 else 1)


def _arrays(block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return block.codes, block.scaled, block.label


@dataclass(frozen=True)
class Placement:
    """Where the encoded splits live, and the sizes that decided it (recorded with the run)."""

    where: str
    resident_bytes: int
    budget_bytes: int

    @property
    def in_memory(self) -> bool:
        return self.where == "memory"


def place(rows: int, shape: Shape, budget_bytes: int) -> Placement:
    """In memory when the rows as model inputs fit in `DATA_SHARE` of the budget, else in files."""
    resident = rows * shape.resident_row_bytes
    return Placement("memory" if resident <= DATA_SHARE * budget_bytes else "files", resident, budget_bytes)


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, from its footer."""
    with pq.ParquetFile(path) as parquet:
        return int(parquet.metadata.num_rows)


def parquet_batches(
    path: Path, columns: Sequence[str], batch_rows: int = ENCODE_BATCH
) -> Iterator[pl.DataFrame]:
    """The file's rows in file order, `batch_rows` at a time, as frames.

    Without pre-buffering: with it (pyarrow's default) the reader kept the buffers of every row
    group it had read until the end of the file, 400 MB more resident at 100x the 2013 set.
    """
    with pq.ParquetFile(path, pre_buffer=False) as parquet:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(columns)):
            yield pl.from_arrow(batch)  # type: ignore[misc]


Store = ResidentStore | FileStore


def encode_split(path: Path, preprocessor: Preprocessor, label: str, store: Store) -> None:
    """Encode a split file into `store`, one Parquet batch at a time."""
    start = 0
    columns = [*preprocessor.categorical, *preprocessor.numeric, label]
    for frame in parquet_batches(path, columns):
        codes, scaled = preprocessor.encode(frame)
        store.write(start, Block(codes.astype(np.int32), scaled, label_values(frame, label).astype(np.uint8)))
        start += frame.height
    if start != store.rows:
        raise ValueError(f"{path} gave {start} rows, its footer says {store.rows}")


@contextmanager
def encoded_splits(
    paths: Mapping[str, Path], preprocessor: Preprocessor, label: str, placement: Placement
) -> Iterator[dict[str, Store]]:
    """Every split encoded where `placement` says; its files are closed, hence freed, when the block ends."""
    shape = shape_of(preprocessor)
    with ExitStack() as stack:
        stores: dict[str, Store] = {}
        for name, path in paths.items():
            rows = parquet_rows(path)
            if placement.in_memory:
                stores[name] = ResidentStore(rows, shape, preprocessor.inputs)
            else:
                store = FileStore(rows, shape, preprocessor.inputs)
                stack.callback(store.close)
                stores[name] = store
            encode_split(path, preprocessor, label, stores[name])
        yield stores


def shape_of(preprocessor: Preprocessor) -> Shape:
    return Shape(len(preprocessor.categorical), len(preprocessor.numeric), preprocessor.numeric_width)
