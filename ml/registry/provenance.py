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


def model_key(training_set_md5: str, train_params: dict[str, Any]) -> str:
    """Artifacts are named by what made them, so a retried step finds its own checkpoints."""
    return f"{training_set_md5.removesuffix('.dir')[:12]}-{params_hash(train_params)[:8]}"
