"""The training set drift is judged against: the one the champion learned from, found by its md5.

The training set on disk is the newest snapshot, which a retraining may have replaced
before (or without) its candidate becoming champion; comparing recent features with it
would judge the served model by data it never saw. So the champion's
`training_set_md5` picks the reference: the snapshot on disk when dvc.lock says it is
that one, else a copy restored from the DVC remote into a cache folder named by the md5,
restored once and reused by every later run. The cache keeps the champion's copy only:
a new champion's restore removes the previous one. Before the first champion there is
nothing to match, so the training set on disk is the reference, and the reference says so.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ml.registry.dvc_repo import TRAINING_SET_PATH, DvcError, DvcRepo
from ml.registry.model_registry import ModelVersion
from ml.training.training_set import MANIFEST


@dataclass(frozen=True)
class Reference:
    """A training-set folder to compare with, its md5 when known, and why it is the one."""

    folder: Path
    md5: str | None
    champion_version: int | None
    origin: str


def on_disk_md5(repo: DvcRepo) -> str | None:
    """The md5 dvc.lock records for the training set on disk; None before the first snapshot is pinned."""
    if not (repo.root / "dvc.lock").exists():
        return None
    try:
        return repo.locked_output("training_set", TRAINING_SET_PATH).md5
    except (DvcError, KeyError):
        return None


def _is_snapshot(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def _restore(repo: DvcRepo, md5: str, cache: Path) -> Path:
    """Restore `md5` into `cache/md5` through a private staging folder, then drop older copies.

    Two runs restoring at once each stage their own copy; the first rename wins and the
    other run uses the winner's copy.
    """
    target = cache / md5
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{md5}-"))
    try:
        restored = repo.restore(md5, staging / "training_set")
        if not _is_snapshot(restored):
            raise DvcError(
                f"DVC output {md5} restored into {restored} is not a training set ({MANIFEST} missing)"
            )
        if target.exists() and not _is_snapshot(target):
            shutil.rmtree(target)  # a copy left half-written by a run that was killed
        if not target.exists():
            restored.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for other in cache.iterdir():
        if other != target and other.is_dir() and not other.name.startswith(".") and _is_snapshot(other):
            shutil.rmtree(other, ignore_errors=True)
    return target


def find_reference(
    champion: ModelVersion | None, repo: DvcRepo, on_disk: Path, cache: Path
) -> Reference | None:
    """The champion's training set (on disk, cached, or restored now); without a champion, the one on disk.

    None when there is no champion and no training set on disk: nothing to compare with yet.
    Fails (DvcError) when the champion's training set cannot be restored: a drift number
    against another training set would say nothing about the model that serves.
    """
    disk_md5 = on_disk_md5(repo) if _is_snapshot(on_disk) else None
    if champion is None:
        if not _is_snapshot(on_disk):
            return None
        return Reference(on_disk, disk_md5, None, "no champion yet: the training set on disk")
    md5 = champion.training_set_md5
    where = f"champion v{champion.version}'s training set"
    if disk_md5 == md5:
        return Reference(on_disk, md5, champion.version, f"{where}, on disk")
    cached = cache / md5
    if _is_snapshot(cached):
        return Reference(cached, md5, champion.version, f"{where}, restored earlier into {cached}")
    newer = f"the one on disk is {disk_md5}" if disk_md5 else "none is pinned on disk"
    restored = _restore(repo, md5, cache)
    return Reference(restored, md5, champion.version, f"{where}, restored from DVC into {restored} ({newer})")
