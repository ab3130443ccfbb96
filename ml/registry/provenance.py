"""What a model version was made from: git commit, parameters and their hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def git_commit(repo: Path) -> str:
    """HEAD of the repository, marked `-dirty` when tracked files changed; `unknown` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


PLATFORM_WRITTEN = ("dvc.lock",)
"""Tracked files the pipeline itself rewrites (DVC's lock after each stage): reported apart, not as code changes."""


def source_tree(repo: Path) -> dict[str, Any]:
    """The tree a model was trained from: HEAD, the tracked files that differ from it, and dvc.lock's state.

    `changed` lists code and configuration changes (a dirty tree); dvc.lock is written by the
    pipeline on every run, so its state (`committed`, `modified`, `untracked`, `absent`) is kept
    beside it. Outside git the commit is `unknown` and nothing is listed.
    """
    try:
        head = _git(repo, "rev-parse", "HEAD").strip()
        status = _git(repo, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "changed": [], "dirty": False, "dvc_lock": "unknown"}
    entries = {line[3:]: line[:2] for line in status.splitlines() if line}
    changed = sorted(p for p, code in entries.items() if code != "??" and p not in PLATFORM_WRITTEN)
    lock = entries.get("dvc.lock")
    state = {None: "committed", "??": "untracked"}.get(lock, "modified")
    if lock is None and not (repo / "dvc.lock").exists():
        state = "absent"
    return {"commit": head, "changed": changed, "dirty": bool(changed), "dvc_lock": state}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def model_key(training_set_md5: str, train_params: dict[str, Any]) -> str:
    """Artifacts are named by what made them, so a retried step finds its own checkpoints."""
    return f"{training_set_md5.removesuffix('.dir')[:12]}-{params_hash(train_params)[:8]}"
