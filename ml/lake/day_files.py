"""Replacing days of a daily Delta table with Parquet files of whole days, in one commit.

delta-rs's predicate overwrite encodes its files one at a time on one core and cuts them
by size, across days. A daily write here instead:

1. groups the frame's rows into bins of whole adjacent days within the layout's row budget
   (`layout.pack_days`; a day bigger than the budget is a bin alone), the files maintenance
   would make, so a range run's files need no relayout and a day rewritten later rewrites
   its bin, not the run;
2. writes each bin as one Parquet file with polars (all cores, zstd), beside the table's
   other files;
3. commits, against the latest snapshot, the new files' add actions and remove actions for
   every live file that holds a row of the days. A removed file that also holds other days
   has those rows written again, binned with the new rows, in the same commit (as the
   predicate overwrite does), so no other day changes;
4. never lets delta-rs retry the commit: a concurrent commit fails it, its own files of the
   snapshot are deleted, and the write starts again from the new snapshot (the new rows'
   files are kept), so a day is never held twice.

Readers see the old days or the new ones, never a mix: nothing is visible before the commit.
`replace` returns None, having written nothing, where the table is not one this can write
exactly (its schema differs from the frame's, a column is not nullable, a protocol feature
beyond the basic writer, partition columns, or a live file without statistics of the day
column); `DeltaStore` then uses delta-rs's overwrite.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction

from ml.lake import layout
from ml.lake.storage import filesystem

TOKEN_KEY = "platform_write"
"""Commit metadata naming the attempt, so a failed call can tell whether its commit landed."""
ATTEMPTS = 30
"""Commits tried before giving up; each failed one lost to a concurrent commit."""
WRITERS = max(1, min(4, os.cpu_count() or 1))
"""Files written at once (polars releases the interpreter while it encodes)."""
PLAIN_TYPES: dict[str, pl.DataType] = {
    "bool": pl.Boolean(),
    "int8": pl.Int8(),
    "int16": pl.Int16(),
    "int32": pl.Int32(),
    "int64": pl.Int64(),
    "float": pl.Float32(),
    "double": pl.Float64(),
    "string": pl.String(),
    "large_string": pl.String(),
    "string_view": pl.String(),
    "date32[day]": pl.Date(),
    "timestamp[us, tz=UTC]": pl.Datetime("us", "UTC"),
}
"""Arrow types of a Delta schema, by name, whose Parquet encoding by polars is what the schema says."""


class DayWriteConflictError(DeltaError):
    """Every attempt of a daily write lost to a concurrent commit; nothing of it was committed."""


@dataclass(frozen=True)
class _File:
    """A data file written for the commit, not yet visible to any reader."""

    name: str
    path: str
    rows: int
    first: dt.date
    last: dt.date
    size: int

    def add(self, column: str) -> AddAction:
        stats = {
            "numRecords": self.rows,
            "minValues": {column: self.first.isoformat()},
            "maxValues": {column: self.last.isoformat()},
            "nullCount": {column: 0},
        }
        return AddAction(self.name, self.size, {}, int(time.time() * 1000), True, json.dumps(stats))


def unsupported(snapshot: DeltaTable, frame: pl.DataFrame) -> str | None:
    """Why this table cannot be written here, or None when it can."""
    protocol = snapshot.protocol()
    if protocol.min_writer_version > 2 or protocol.writer_features or protocol.reader_features:
        return f"protocol {protocol}"
    metadata = snapshot.metadata()
    if metadata.partition_columns:
        return f"partitioned by {metadata.partition_columns}"
    if any(key.startswith(("delta.constraints.", "delta.columnMapping")) for key in metadata.configuration):
        return "constraints or column mapping"
    fields = pa.schema(snapshot.schema().to_arrow())
    if not all(f.nullable for f in fields):
        return "a column that is not nullable"
    table = {f.name: PLAIN_TYPES.get(str(f.type)) for f in fields}
    if None in table.values():
        return "a column type outside the plain ones"
    if table != dict(frame.schema) or list(table) != frame.columns:
        return "the frame's schema differs from the table's"
    return None


class _Writer:
    """Writes files into one table's folder, through pyarrow's filesystem of its URI."""

    def __init__(self, uri: str, storage_options: Mapping[str, str] | None) -> None:
        self.fs, self.root = filesystem(uri, dict(storage_options) if storage_options else None)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def write(self, frame: pl.DataFrame, column: str) -> list[_File]:
        """`frame`'s rows (sorted by `column`) as one file per bin of whole days."""
        if frame.is_empty():
            return []
        counts = frame.group_by(column, maintain_order=True).len()
        bins = layout.pack_days(list(counts.iter_rows()), layout.row_budget(frame.width))
        lasts = pl.Series([b.last for b in bins], dtype=pl.Date)
        ends = frame[column].search_sorted(lasts, "right").to_list()
        parts = [
            (frame.slice(start, end - start), b.first, b.last)
            for b, start, end in zip(bins, [0, *ends[:-1]], ends, strict=True)
        ]
        if len(parts) == 1:
            return [self._one(*parts[0])]
        with ThreadPoolExecutor(min(WRITERS, len(parts))) as pool:
            return list(pool.map(lambda part: self._one(*part), parts))

    def _one(self, part: pl.DataFrame, first: dt.date, last: dt.date) -> _File:
        name = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
        path = f"{self.root}/{name}"
        if self.local:
            part.write_parquet(path, statistics=True)
        else:
            with self.fs.open_output_stream(path) as out:
                part.write_parquet(out, statistics=True)
        size = self.fs.get_file_info(path).size or 0
        return _File(name, path, part.height, first, last, int(size))

    def read(self, relative: str) -> pl.DataFrame:
        path = f"{self.root}/{unquote(relative)}"
        # One thread: a file that holds several days is small (within the layout's budget),
        # and starting polars' pool costs more than decoding it (1.4 ms against 3.2 ms at 1x).
        if self.local:
            return pl.read_parquet(path, parallel="none")
        with self.fs.open_input_file(path) as source:
            return pl.read_parquet(source, parallel="none")

    def delete(self, files: Sequence[_File]) -> None:
        for f in files:
            self.fs.delete_file(f.path)


def replace(
    latest: Callable[[], DeltaTable],
    uri: str,
    frame: pl.DataFrame,
    column: str,
    days: Sequence[dt.date],
    commit_metadata: Mapping[str, str],
    storage_options: Mapping[str, str] | None = None,
    loaded: DeltaTable | None = None,
) -> int | None:
    """Replace exactly `days` with `frame` (its rows all of `days`); the snapshot version the commit followed.

    `latest` loads the table's latest version; `loaded`, if given, is one just loaded (the
    first attempt starts from it). None, with nothing written, where the table is not one
    this writes (module docstring).
    """
    snapshot = loaded if loaded is not None else latest()
    span = (min(days), max(days))
    files = layout.live_files(snapshot, column, span)
    if files is None or unsupported(snapshot, frame) is not None:
        return None
    wanted, writer = set(days), _Writer(uri, storage_options)
    token = uuid.uuid4().hex
    metadata = {**commit_metadata, TOKEN_KEY: token}
    ordered = frame if frame[column].is_sorted() else frame.sort(column, maintain_order=True)
    plain: list[_File] | None = None  # the frame's own files, kept across attempts
    for attempt in range(ATTEMPTS):
        files = layout.live_files(snapshot, column, span) if attempt else files
        if files is None:  # a writer without statistics got in first
            writer.delete(plain or [])
            return None
        touched = [f for f in files if any(f.first <= d <= f.last for d in wanted)]
        kept = _others(writer, touched, wanted, frame, column)
        if kept is None:
            plain = writer.write(ordered, column) if plain is None else plain
            own: list[_File] = plain
        else:  # this attempt's own files: the frame with the kept rows
            own = writer.write(ordered.merge_sorted(kept, column), column)  # days apart: no ties
        now = int(time.time() * 1000)  # the deletion time vacuum's retention counts from
        actions = [
            *(f.add(column) for f in own),
            *(RemoveAction(f.path, True, now, f.size) for f in touched),
        ]
        properties = CommitProperties(custom_metadata=metadata, max_commit_retries=0)
        try:
            snapshot.create_write_transaction(
                actions, "append", snapshot.schema(), commit_properties=properties
            )
        except (CommitFailedError, DeltaError):
            # Files are deleted only once the log shows the commit did not land; any other
            # failure leaves them unreferenced, where no version reads them (as a crashed
            # delta-rs write does; `vacuum(full=True)` deletes such files).
            moved_on = latest()
            if _committed(moved_on, snapshot, token):  # it landed, and a post-commit step failed
                break
            if moved_on.version() == snapshot.version():  # not lost to a commit: a real failure
                writer.delete(own)
                raise
            if own is not plain:
                writer.delete(own)
            snapshot = moved_on
            time.sleep(random.uniform(0.01, 0.05 * 2 ** min(attempt, 5)))
            continue
        break
    else:
        writer.delete(plain or [])
        raise DayWriteConflictError(
            f"{uri}: {ATTEMPTS} attempts to replace {min(days)}..{max(days)} each lost to a concurrent commit"
        )
    if plain is not None and own is not plain:
        writer.delete(plain)  # written for an earlier attempt, never committed
    return int(snapshot.version())


def _committed(latest: DeltaTable, snapshot: DeltaTable, token: str) -> bool:
    """Whether a commit after `snapshot` carries `token`."""
    newer = int(latest.version()) - int(snapshot.version())
    return newer > 0 and any(entry.get(TOKEN_KEY) == token for entry in latest.history(newer))


def _others(
    writer: _Writer,
    touched: Sequence[layout.DataFile],
    wanted: set[dt.date],
    frame: pl.DataFrame,
    column: str,
) -> pl.DataFrame | None:
    """Rows of other days in the files about to be removed, sorted by day; None when there are none."""
    partial = [f for f in touched if any(d not in wanted for d in _days(f.first, f.last))]
    if not partial:
        return None
    rows = pl.concat([_as(writer.read(f.path), frame.schema) for f in partial])
    wanted_series = pl.Series(sorted(wanted), dtype=pl.Date).implode()
    rows = rows.filter(~pl.col(column).is_in(wanted_series))
    if not rows[column].is_sorted():  # several files, or a file of an older writer
        rows = rows.sort(column, maintain_order=True)
    return rows if rows.height else None


def _as(read: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """A file's rows in the frame's columns and types (files of older writers may differ in order)."""
    return read if read.schema == schema else read.select(list(schema)).cast(dict(schema))


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
