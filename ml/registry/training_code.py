"""The training code a registered model was made with, taken from its git commit.

A model's bytes depend on the code that trained it as much as on its data, so a retraining
with today's checkout stops reproducing a model as soon as the training loop changes. The
registry records the commit (`ml.registry.provenance.git_commit`); when that commit is clean
and present in the repository, its `ml/` package is extracted with `git archive` and the
retraining runs from there, whatever the working tree holds now. A model trained from a dirty
tree or outside git has no such record: it is retrained with the checkout's own code, and the
note says so.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ml"
ENTRYPOINT = "ml/training/train.py"


@dataclass(frozen=True)
class TrainingCode:
    """Where to run `python -m ml.training.train` from (None: the caller's own folder), and why."""

    folder: Path | None
    note: str


def training_code(repo: Path, commit: str, work: Path) -> TrainingCode:
    """The training code of `commit` extracted under `work`, or the checkout's, with the reason."""
    fallback = "retraining with this checkout's code"
    if not commit or commit == "unknown":
        return TrainingCode(None, f"the model's commit is unknown (trained outside git): {fallback}")
    if commit.endswith("-dirty"):
        return TrainingCode(
            None, f"the model was trained from commit {commit[:12]} with uncommitted changes: {fallback}"
        )
    short = commit[:12]
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return TrainingCode(None, f"commit {short} is not in the repository {repo}: {fallback}")
    if not _git(repo, "ls-tree", "--name-only", commit, "--", ENTRYPOINT):
        return TrainingCode(None, f"commit {short} holds no {ENTRYPOINT}: {fallback}")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, PACKAGE], cwd=repo, capture_output=True, check=True
    ).stdout
    work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    return TrainingCode(work, f"retraining with the training code of commit {short} (extracted into {work})")


def _git(repo: Path, *args: str) -> str | None:
    """The command's output, or None when git refuses it (not a repository, no such object)."""
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None
