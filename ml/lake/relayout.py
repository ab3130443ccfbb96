"""Carrying out a day-range layout's rewrites (`ml.lake.layout` plans them): maintenance's part.

A rewrite is one commit of remove and add actions (`data_change=false`, as an OPTIMIZE
writes), the only way to put several files, each a day range, in one commit: delta-rs's
writer cuts files by size, across days. The files are written by delta-rs into a scratch
table partitioned by bin (so each bin is one file, with delta-rs's own statistics), then
moved into the table. The commit is made against the snapshot the rows were read from and
is never retried on a conflict: a concurrent daily write wins and the bin waits for the next
maintenance.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence

import polars as pl
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from ml.lake.layout import Bin, Rewrite, live_files, plan, row_budget, stats_configuration, unsettled_ranges
from ml.lake.storage import filesystem, scan_delta

CHUNK_ROWS = 500_000
"""Rows read into memory at once while a rewrite writes its bins."""

BIN_COLUMN = "__layout_bin"
SCRATCH = "_layout"
"""Folder of a table's scratch tables; its leading underscore hides it from readers and vacuum."""


def _chunks(bins: Sequence[Bin]) -> Iterator[list[Bin]]:
    chunk: list[Bin] = []
    for b in bins:
        if chunk and sum(c.rows for c in chunk) + b.rows > CHUNK_ROWS:
            yield chunk
            chunk = []
        chunk.append(b)
    if chunk:
        yield chunk


def _scratch_adds(fs: pafs.FileSystem, scratch: str) -> list[dict]:
    """The add actions delta-rs wrote into the scratch table's log."""
    infos = fs.get_file_info(pafs.FileSelector(f"{scratch}/_delta_log"))
    adds = []
    for info in sorted(i.path for i in infos if i.path.endswith(".json")):
        with fs.open_input_stream(info) as stream:
            lines = stream.read().decode().splitlines()
        adds += [action["add"] for action in map(json.loads, lines) if "add" in action]
    return adds


def _without_bin(stats: str) -> str:
    parsed = json.loads(stats) if stats else {}
    for key in ("minValues", "maxValues", "nullCount"):
        parsed.get(key, {}).pop(BIN_COLUMN, None)
    return json.dumps(parsed)


def rewrite(
    snapshot: DeltaTable,
    column: str,
    job: Rewrite,
    metadata: Mapping[str, str],
    storage_options: Mapping[str, str] | None = None,
) -> int | None:
    """Replace `job.sources` by one file per bin in one commit: the files added, None when the table moved on first.

    `snapshot` is the latest version as the caller loaded it: the rows are read from it, and
    the commit is checked against every commit after it. A job whose files changed since it
    was planned (a daily write in between) is not carried out either.
    """
    options = dict(storage_options) if storage_options else None
    live = live_files(snapshot, column)
    sources = {f.path for f in job.sources}
    if live is None or not sources <= {f.path for f in live}:
        return None
    if any(f.path not in sources and f.first <= job.last and f.last >= job.first for f in live):
        return None
    uri, version = snapshot.table_uri.rstrip("/"), snapshot.version()
    fs, root = filesystem(uri, options)
    token = uuid.uuid4().hex
    scratch = f"{root}/{SCRATCH}/{token}"
    try:
        for chunk in _chunks(job.bins):
            _write_bins(uri, version, column, chunk, f"{uri}/{SCRATCH}/{token}", options)
        adds = []
        for add in _scratch_adds(fs, scratch):
            name = add["path"].rsplit("/", 1)[-1]
            fs.move(f"{scratch}/{add['path']}", f"{root}/{name}")
            stats = _without_bin(add["stats"])
            adds.append(AddAction(name, int(add["size"]), {}, int(add["modificationTime"]), False, stats))
    finally:
        if fs.get_file_info(scratch).type != pafs.FileType.NotFound:
            fs.delete_dir(scratch)
    now = int(time.time() * 1000)  # the protocol's deletion time: vacuum's retention counts from it
    removes = [RemoveAction(f.path, False, now, f.size) for f in job.sources]
    properties = CommitProperties(
        custom_metadata={**metadata, "layout_days": job.label}, max_commit_retries=0
    )
    try:
        snapshot.create_write_transaction(
            [*adds, *removes], "append", snapshot.schema(), commit_properties=properties
        )
    except CommitFailedError:
        for add in adds:  # never committed, so no version reads them
            fs.delete_file(f"{root}/{add.path}")
        return None
    return len(adds)


def _write_bins(
    uri: str, version: int, column: str, chunk: Sequence[Bin], scratch: str, options: dict[str, str] | None
) -> None:
    """Append the rows of `chunk` to the scratch table, one partition (so one file) per bin."""
    rows = (
        scan_delta(uri, version=version, storage_options=options)
        .filter(pl.col(column).is_between(chunk[0].first, chunk[-1].last))
        .collect()
    )
    expected = sum(b.rows for b in chunk)
    if rows.height != expected:
        raise ValueError(
            f"{uri} {chunk[0].first}..{chunk[-1].last}: read {rows.height} rows, expected {expected}"
        )
    starts = pl.Series([b.first for b in chunk], dtype=pl.Date)
    rows = rows.sort(column, maintain_order=True).rechunk()  # one stream: delta-rs interleaves chunks
    rows = rows.with_columns(
        (starts.search_sorted(rows[column], side="right") - 1).cast(pl.Int32).alias(BIN_COLUMN)
    )
    write_deltalake(
        scratch,
        rows.to_arrow(),
        mode="append",
        partition_by=[BIN_COLUMN],
        configuration=stats_configuration(column),
        target_file_size=1 << 40,
        storage_options=options,
    )


def lay_out(
    latest: Callable[[], DeltaTable],
    column: str,
    metadata: Mapping[str, str],
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Rewrite what `plan` finds, one commit per rewrite; report the ranges a concurrent write won.

    `latest` loads the table's latest version. A table made before day ranges first gets the
    day column as its only statistics column (`stats_configuration`).
    """
    options = dict(storage_options) if storage_options else None
    delta = latest()
    wanted = stats_configuration(column)
    if any(delta.metadata().configuration.get(k) != v for k, v in wanted.items()):
        delta.alter.set_table_properties(
            wanted, commit_properties=CommitProperties(custom_metadata=dict(metadata))
        )
        delta = latest()
    files = live_files(delta, column)
    if files is None:
        return {"files_added": 0, "files_removed": 0, "skipped": f"no statistics of {column}: left as is"}
    budget = row_budget(len(delta.schema().fields))
    day_rows: dict[dt.date, int] = {}
    for first, last in unsettled_ranges(files, budget):
        scan = scan_delta(delta.table_uri, version=delta.version(), storage_options=options)
        counts = scan.filter(pl.col(column).is_between(first, last)).group_by(column).len()
        day_rows.update(counts.collect().iter_rows())
    added = removed = 0
    skipped = []
    for job in plan(files, budget, day_rows):
        written = rewrite(latest(), column, job, metadata, storage_options)
        if written is None:
            skipped.append(job.label)
        else:
            added, removed = added + written, removed + len(job.sources)
    return {"files_added": added, "files_removed": removed, "skipped": ", ".join(skipped) or "none"}
