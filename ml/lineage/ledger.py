"""The lineage ledger: what each Delta commit of bronze and features was made from, kept in the commit.

A commit's custom metadata holds one JSON entry under `LINEAGE_KEY`:

- a bronze commit: per day it wrote, the landing file (by its name under the landing
  root), its md5, the rows it delivered and the rows rejected;
- a features commit: the days it wrote and the version of every bronze table it read.

The entries live in the tables' own logs, so the chain from a feature version down to the
landing files needs no other store, and survives maintenance: its commits (a compaction, or
a daily table's files cut into day ranges) carry none, change no row and are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml.lake.delta import MAINTENANCE, OPERATION_KEY, DeltaStore
from ml.lake.storage import absolute_uri
from ml.lake.tables import FEATURES_TABLE

LINEAGE_KEY = "platform_lineage"


@dataclass(frozen=True)
class LandingEntry:
    """One day's landing file as a bronze commit recorded it."""

    name: str
    """Under the landing root (`flights/2013-01-01.csv`), so the record holds wherever the zone lives."""
    md5: str
    landing_rows: int
    rejected: int

    @property
    def stored_rows(self) -> int:
        return self.landing_rows - self.rejected


@dataclass(frozen=True)
class Commit:
    """A commit of a table that carries a lineage entry."""

    table: str
    version: int
    days: frozenset[dt.date]
    sources: dict[str, int] = field(default_factory=dict)
    """Features: the version of each table the commit read."""
    landing: dict[dt.date, LandingEntry] = field(default_factory=dict)
    """Bronze: each written day's landing file."""


def landing_name(uri: str, landing_root: str) -> str:
    """A landing file's name under the zone's root (the URI itself if it is outside).

    The zone makes a relative root absolute (`join_uri`), so the root is compared the same way.
    """
    root = absolute_uri(landing_root).rstrip("/") + "/"
    return uri.removeprefix(root) if uri.startswith(root) else uri


def bronze_entry(landed: Iterable[Any], landing_root: str) -> dict[str, str]:
    """Commit metadata of a bronze write: per day (`ml.ingest.batch.LandedDay`), its landing file."""
    days = {
        d.day.isoformat(): {
            "file": landing_name(d.source, landing_root),
            "md5": d.md5,
            "landing_rows": d.landing_rows,
            "rejected": d.rejected,
        }
        for d in landed
    }
    return {LINEAGE_KEY: json.dumps({"landing": days}, sort_keys=True)}


def features_entry(days: Sequence[dt.date], sources: Mapping[str, int]) -> dict[str, str]:
    """Commit metadata of a features write: its days and the bronze versions it read."""
    entry = {"days": [d.isoformat() for d in days], "sources": dict(sorted(sources.items()))}
    return {LINEAGE_KEY: json.dumps(entry, sort_keys=True)}


def lineage_commits(store: DeltaStore, table: str, at_version: int) -> list[Commit]:
    """The table's commits up to `at_version` that carry a lineage entry, newest first."""
    commits = []
    for info in store.history(table):
        version = int(info["version"])
        raw = info.get(LINEAGE_KEY)
        if version > at_version or not raw or info.get(OPERATION_KEY) == MAINTENANCE:
            continue
        entry = json.loads(raw)
        landing = {
            dt.date.fromisoformat(day): LandingEntry(
                e["file"], e["md5"], int(e["landing_rows"]), int(e["rejected"])
            )
            for day, e in entry.get("landing", {}).items()
        }
        days = frozenset(dt.date.fromisoformat(d) for d in entry.get("days", [])) | frozenset(landing)
        sources = {t: int(v) for t, v in entry.get("sources", {}).items()}
        commits.append(Commit(table, version, days, sources, landing))
    return sorted(commits, key=lambda c: c.version, reverse=True)


def writer_of(commits: Sequence[Commit], day: dt.date) -> Commit | None:
    """The newest commit (of `lineage_commits`) that wrote `day`: the one whose rows a version holds."""
    return next((c for c in commits if day in c.days), None)


def training_window(manifest: Mapping[str, Any]) -> list[dt.date]:
    """Every day a training-set snapshot covers, from its first training day to its last test day."""
    splits = manifest["splits"]
    first = dt.date.fromisoformat(splits["train"]["first"])
    last = dt.date.fromisoformat(splits["test"]["last"])
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def read_versions(store: DeltaStore, features_version: int, days: Sequence[dt.date]) -> dict[str, list[int]]:
    """Per bronze table, the versions the features of `days` (as of `features_version`) were built from."""
    commits = lineage_commits(store, FEATURES_TABLE, features_version)
    versions: dict[str, set[int]] = {}
    for day in days:
        writer = writer_of(commits, day)
        for table, version in (writer.sources if writer else {}).items():
            versions.setdefault(table, set()).add(version)
    return {table: sorted(found) for table, found in sorted(versions.items())}
