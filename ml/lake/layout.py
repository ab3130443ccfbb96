"""Day-range layout of a daily Delta table: every file holds a contiguous run of whole days.

Replacing a day rewrites every file holding a row of that day, with all the other days in
it (`ml.lake.day_files`, or delta-rs's predicate overwrite). delta-rs's compaction bins
files by size alone (a year becomes one file), after which every daily rewrite costs the
year. Here daily writes pack whole days into files of at most `CELL_BUDGET`, and maintenance
merges small files of adjacent days up to it, sized so that rewriting a file costs about
what writing a day costs (`benchmarks/delta_layout.py` measures it); days are never split, a
day bigger than the budget stays alone, and a file that spans more days than the budget
allows (a range written by delta-rs) is cut back into day ranges.

The budget counts rows times columns, not bytes: a rewrite's cost follows the
values it decodes and encodes, and row counts add up exactly when files merge, so a table
laid out once plans no further rewrite (compressed sizes shrink on merging, and a size
budget would keep finding neighbours small enough to merge).

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
from dataclasses import dataclass

import polars as pl
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from ml.lake.storage import filesystem, scan_delta

CELL_BUDGET = 1 << 15
"""Rows times columns of a merged file: less than a day of the features at the 2013 traffic
(41 columns, about 900 rows a day, 0.04 MiB), so every day of the features is a file of its
own; smaller tables (bronze weather, 15 columns and about 70 rows a day) still merge a month
or so of days into a file.

`benchmarks/delta_layout.py --cell-budget` measures the trade-off at 1x: merging days makes a
one-day rewrite read and write the file's other days again, and more, smaller files make
every load of the table and every scan cost more. With the day-file writer
(`ml.lake.day_files`), one-day rewrite after maintenance ÷ the same rows into an empty table
(target 2) and ten years ÷ one year (target 1.5), in runs minutes apart on a 2-core machine:
a day a file (this budget) 1.62 and 1.34-1.40; up to 2 days (65,536) 2.06 and 1.28; up to
4 days (131,072) 2.03-2.66 and 1.07-1.09. What a day a file costs at 1x: a year's scan reads
364 files instead of 120 (151 ms against 83 ms), a range run writes them (a year 1.05 s
against 0.54 s); from 10x traffic a day is a file at any of these budgets."""
WRITE_TARGET_BYTES = 1 << 20
"""delta-rs `target_file_size` of a daily write that goes through delta-rs (a table
`ml.lake.day_files` cannot write): a range's files stay near a day at 100x traffic, and a day
rewritten before the next maintenance rewrites about a MiB, not the range."""
CHUNK_ROWS = 500_000
"""Rows read into memory at once while a rewrite writes its bins."""
STATS_COLUMNS = "delta.dataSkippingStatsColumns"
BIN_COLUMN = "__layout_bin"
SCRATCH = "_layout"
"""Folder of a table's scratch tables; its leading underscore hides it from readers and vacuum."""


@dataclass(frozen=True)
class DataFile:
    """A live data file of a daily table, from its add action's statistics."""

    path: str
    rows: int
    size: int
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class Bin:
    """Whole adjacent days that go into one file."""

    first: dt.date
    last: dt.date
    rows: int


@dataclass(frozen=True)
class Rewrite:
    """Files replaced in one commit by the bins of their days."""

    sources: tuple[DataFile, ...]
    bins: tuple[Bin, ...]

    @property
    def first(self) -> dt.date:
        return self.bins[0].first

    @property
    def last(self) -> dt.date:
        return self.bins[-1].last

    @property
    def label(self) -> str:
        return f"{self.first}..{self.last}"


@dataclass(frozen=True)
class _Atom:
    """What the packing moves: a settled cluster whole, or one day of an unsettled one."""

    first: dt.date
    last: dt.date
    rows: int
    cluster: int
    whole: bool


def stats_configuration(column: str | None) -> dict[str, str]:
    """Table properties of a daily table: file statistics of the day column only.

    Readers and the predicate overwrite prune files by the day only, and delta-rs's cost
    of a write grows with the statistics of every live file it loads (41 columns of them
    for the features): measured with a thousand files, a one-day rewrite took 93 ms with
    them and 37 ms without.
    """
    return {STATS_COLUMNS: column} if column else {}


def row_budget(columns: int) -> int:
    return max(1, CELL_BUDGET // max(1, columns))


def pack_days(day_rows: Sequence[tuple[dt.date, int]], budget: int) -> list[Bin]:
    """Whole adjacent days, in order, packed greedily while a bin's rows stay within `budget`
    (a day over the budget is a bin alone): the files a daily write makes."""
    bins: list[Bin] = []
    for day, rows in day_rows:
        if bins and bins[-1].rows + rows <= budget:
            bins[-1] = Bin(bins[-1].first, day, bins[-1].rows + rows)
        else:
            bins.append(Bin(day, day, rows))
    return bins


def data_files(
    actions: pl.DataFrame, column: str, within: tuple[dt.date, dt.date] | None = None
) -> list[DataFile] | None:
    """The files holding rows (only those with a day in `within`, first and last, if given),
    or None when one has no day statistics (its days are unknown)."""
    low, high = f"min.{column}", f"max.{column}"
    if actions.is_empty():
        return []
    if low not in actions.columns or high not in actions.columns:
        return None
    held = actions.filter(pl.col("num_records").fill_null(1) > 0)
    if held[low].null_count() or held[high].null_count() or held["num_records"].null_count():
        return None
    if within is not None:  # before the files become objects: a daily write touches few of them
        held = held.filter((pl.col(low) <= within[1]) & (pl.col(high) >= within[0]))
    return [
        DataFile(path, int(rows), int(size), first, last)
        for path, rows, size, first, last in held.select(
            "path", "num_records", "size_bytes", low, high
        ).iter_rows()
    ]


def clusters(files: Sequence[DataFile]) -> list[tuple[DataFile, ...]]:
    """Files grouped by overlapping day ranges, in day order: clusters share no day."""
    found: list[list[DataFile]] = []
    end: dt.date | None = None
    for f in sorted(files, key=lambda f: (f.first, f.last, f.path)):
        if found and end is not None and f.first <= end:
            found[-1].append(f)
            end = max(end, f.last)
        else:
            found.append([f])
            end = f.last
    return [tuple(c) for c in found]


def settled(cluster: Sequence[DataFile], budget: int) -> bool:
    """Laid out already: one file within the budget or of one day, or only files of the same one day."""
    if len(cluster) == 1:
        return cluster[0].rows <= budget or cluster[0].days == 1
    return all(f.first == f.last == cluster[0].first for f in cluster)


def unsettled_ranges(files: Sequence[DataFile], budget: int) -> list[tuple[dt.date, dt.date]]:
    """Day ranges whose rows per day `plan` needs, to cut them into bins."""
    return [
        (min(f.first for f in c), max(f.last for f in c)) for c in clusters(files) if not settled(c, budget)
    ]


def plan(files: Sequence[DataFile], budget: int, day_rows: Mapping[dt.date, int]) -> list[Rewrite]:
    """The rewrites that lay the table out; none when it is laid out.

    Greedy over the days in order: a bin takes the next cluster (or day) while it stays within
    the budget. A bin that is one settled file is left alone. Running it on its own result
    plans nothing: two neighbouring bins were closed because together they exceed the budget.
    `day_rows` holds the rows per day of every range of `unsettled_ranges`.
    """
    groups = clusters(files)
    atoms: list[_Atom] = []
    for i, cluster in enumerate(groups):
        first, last = min(f.first for f in cluster), max(f.last for f in cluster)
        rows = sum(f.rows for f in cluster)
        if settled(cluster, budget):
            atoms.append(_Atom(first, last, rows, i, whole=True))
            continue
        days = sorted(d for d in day_rows if first <= d <= last)
        if sum(day_rows[d] for d in days) != rows:
            raise ValueError(f"rows per day of {first}..{last} do not add up to its files' {rows} rows")
        atoms += [_Atom(d, d, day_rows[d], i, whole=False) for d in days]
    bins: list[list[_Atom]] = []
    for atom in atoms:
        if bins and sum(a.rows for a in bins[-1]) + atom.rows <= budget:
            bins[-1].append(atom)
        else:
            bins.append([atom])
    rewrites: list[tuple[set[int], list[Bin]]] = []
    previous_kept = True
    for members in bins:
        if len(members) == 1 and members[0].whole:
            previous_kept = True
            continue
        touched = {a.cluster for a in members}
        b = Bin(members[0].first, members[-1].last, sum(a.rows for a in members))
        if rewrites and not previous_kept and touched & rewrites[-1][0]:
            rewrites[-1][0].update(touched)
            rewrites[-1][1].append(b)
        else:
            rewrites.append((touched, [b]))
        previous_kept = False
    return [
        Rewrite(tuple(f for i in sorted(touched) for f in groups[i]), tuple(made))
        for touched, made in rewrites
    ]


def max_days_per_file(files: Sequence[DataFile]) -> int:
    return max((f.days for f in files), default=0)


# --- carrying out a rewrite ----------------------------------------------------------------


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


def live_files(
    snapshot: DeltaTable, column: str, within: tuple[dt.date, dt.date] | None = None
) -> list[DataFile] | None:
    return data_files(pl.DataFrame(snapshot.get_add_actions(flatten=True)), column, within)


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
