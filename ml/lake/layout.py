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

Maintenance carries out the plan in `ml.lake.relayout`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
from deltalake import DeltaTable

CELL_BUDGET = 1 << 15
"""Rows times columns of a merged file: less than a day of the features at 2013's traffic
(41 columns, about 900 rows a day), so each of their days is a file; small tables (bronze
weather, about 70 rows a day) still merge a month or so into a file. Merging days makes a
one-day rewrite write the file's other days again; smaller files make every table load and
scan cost more. `benchmarks/delta_layout.py --cell-budget` measures the trade-off; its
readings for 1, 2 and 4 days a file are in `benchmarks/RESULTS.md` (Live time and 100x data):
a day a file keeps the one-day rewrite under 2x a write into an empty table at 1x."""
WRITE_TARGET_BYTES = 1 << 20
"""delta-rs `target_file_size` of a daily write that goes through delta-rs (a table
`ml.lake.day_files` cannot write): a range's files stay near a day at 100x traffic, and a day
rewritten before the next maintenance rewrites about a MiB, not the range."""
STATS_COLUMNS = "delta.dataSkippingStatsColumns"


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


def live_files(
    snapshot: DeltaTable, column: str, within: tuple[dt.date, dt.date] | None = None
) -> list[DataFile] | None:
    return data_files(pl.DataFrame(snapshot.get_add_actions(flatten=True)), column, within)
