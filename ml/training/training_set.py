"""Training-set snapshots: the feature table up to a cutoff, split by time, written as files.

A snapshot folder holds `train.parquet`, `validation.parquet`, `test.parquet` and
`manifest.json` (feature table URI and Delta version, cutoff, split days, rows and
label rate per split, feature lists). Its bytes depend only on the feature rows and
the split, so the same inputs give the same md5.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from ml.features.flight_features import CATEGORICAL_FEATURES, KEY_COLUMNS, LABEL, NUMERIC_FEATURES
from ml.lake.delta import DeltaStore
from ml.lake.tables import FEATURES_TABLE

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"


class TrainingSetError(ValueError):
    pass


@dataclass(frozen=True)
class SplitSizes:
    """Days of the validation and test splits; train is every earlier day."""

    validation_days: int
    test_days: int


@dataclass(frozen=True)
class SplitInfo:
    first: str
    last: str
    rows: int
    label_rate: float


def settled_cutoff(feature_days: Sequence[dt.date], split_days: int) -> dt.date | None:
    """The latest feature day that ends `split_days` consecutive feature days, or None.

    A training set ends with its validation and test days (`split_days` of them) right
    before the cutoff, so a cutoff on the latest day while days just before it are still
    being built (a backfill or late deliveries in flight) would leave a split empty, or judge
    the candidate on part of its days. A day missing for good only holds the cutoff back
    until the splits lie past it.
    """
    have = set(feature_days)
    for day in sorted(have, reverse=True):
        if all(day - dt.timedelta(days=n) in have for n in range(1, split_days)):
            return day
    return None


def split_by_time(features: pl.DataFrame, cutoff: dt.date, sizes: SplitSizes) -> dict[str, pl.DataFrame]:
    """Train, then validation, then test days, ending at the cutoff."""
    window = features.filter(pl.col("flight_date") <= cutoff)
    if window.is_empty():
        first = features["flight_date"].min() if features.height else None
        raise TrainingSetError(
            f"no feature rows on or before the cutoff {cutoff}"
            + (f" (the feature table starts on {first})" if first else " (the feature table is empty)")
        )
    test_first = cutoff - dt.timedelta(days=sizes.test_days - 1)
    validation_first = test_first - dt.timedelta(days=sizes.validation_days)
    parts = {
        "train": window.filter(pl.col("flight_date") < validation_first),
        "validation": window.filter(
            pl.col("flight_date").is_between(validation_first, test_first, closed="left")
        ),
        "test": window.filter(pl.col("flight_date") >= test_first),
    }
    empty = [name for name, frame in parts.items() if frame.is_empty()]
    if empty:
        have = f"{window['flight_date'].min()}..{window['flight_date'].max()}"
        raise TrainingSetError(
            f"split(s) {', '.join(empty)} would be empty: features cover {have}, the cutoff is {cutoff}, "
            f"validation needs {sizes.validation_days} day(s) and test {sizes.test_days} day(s) after training days"
        )
    return {name: frame.sort(list(KEY_COLUMNS)) for name, frame in parts.items()}


def describe(frame: pl.DataFrame) -> SplitInfo:
    return SplitInfo(
        first=str(frame["flight_date"].min()),
        last=str(frame["flight_date"].max()),
        rows=frame.height,
        label_rate=round(float(frame[LABEL].mean() or 0.0), 6),
    )


def write_snapshot(
    parts: dict[str, pl.DataFrame], folder: Path, source: dict[str, object], cutoff: dt.date
) -> dict[str, object]:
    """Write the split files and manifest into a fresh folder, then swap it in; returns the manifest.

    The previous snapshot stays whole until the new one is complete.
    """
    staging = folder.with_name(f".{folder.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, frame in parts.items():
        frame.write_parquet(staging / f"{name}.parquet", statistics=False, compression="zstd")
    manifest = {
        "source": source,
        "cutoff": cutoff.isoformat(),
        "label": LABEL,
        "categorical": list(CATEGORICAL_FEATURES),
        "numeric": list(NUMERIC_FEATURES),
        "splits": {name: asdict(describe(frame)) for name, frame in parts.items()},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    previous = folder.with_name(f".{folder.name}.previous")
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    if previous.exists():
        shutil.rmtree(previous)
    return manifest


def snapshot_from_lake(
    store: DeltaStore, folder: Path, cutoff: dt.date | None, sizes: SplitSizes, version: int | None = None
) -> dict[str, object]:
    """Snapshot the feature table as of a Delta version (default: current; recorded in the manifest)."""
    if not store.exists(FEATURES_TABLE):
        raise TrainingSetError(
            f"feature table {store.uri(FEATURES_TABLE)} does not exist: materialize features/flight_features first"
        )
    version = int(store.table(FEATURES_TABLE).version()) if version is None else version
    features = store.read(FEATURES_TABLE, version)
    if features.is_empty():
        raise TrainingSetError(f"feature table {store.uri(FEATURES_TABLE)} version {version} has no rows")
    days = features.get_column("flight_date").unique().to_list()
    # Without a cutoff: the latest day whose splits are whole; failing that, the latest day,
    # which split_by_time then refuses naming the empty split.
    chosen = cutoff or settled_cutoff(days, sizes.validation_days + sizes.test_days) or max(days)
    parts = split_by_time(features, chosen, sizes)
    # The table by its name under the lake root, not its URI: the snapshot's bytes (hence its md5)
    # must not depend on the folder or bucket the lake happens to live in.
    source = {"feature_table": FEATURES_TABLE, "feature_table_version": version}
    return write_snapshot(parts, folder, source, chosen)


def read_split(folder: Path, split: str) -> pl.DataFrame:
    path = folder / f"{split}.parquet"
    if not path.exists():
        raise TrainingSetError(f"training set {folder} has no {split} split ({path} is missing)")
    return pl.read_parquet(path)


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise TrainingSetError(f"{folder} is not a training-set snapshot ({MANIFEST} is missing)")
    return json.loads(path.read_text())


def folder_md5(folder: Path) -> str:
    """md5 over the files' names and bytes, in name order: identical folders, identical md5."""
    digest = hashlib.md5()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        with path.open("rb") as handle:  # in blocks: a split of any size is never read whole
            digest.update(hashlib.file_digest(handle, "md5").digest())
    return digest.hexdigest()


def sizes_of(manifest: dict) -> SplitSizes:
    """The split sizes a snapshot was made with, read back from its manifest."""
    cutoff = dt.date.fromisoformat(manifest["cutoff"])
    test_first = dt.date.fromisoformat(manifest["splits"]["test"]["first"])
    validation_first = dt.date.fromisoformat(manifest["splits"]["validation"]["first"])
    return SplitSizes((test_first - validation_first).days, (cutoff - test_first).days + 1)
