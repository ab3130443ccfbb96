"""The source tree a model is registered with: its commit, what differs from it, and dvc.lock's state."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ml.registry.provenance import git_commit, source_tree

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]


def _repo(root: Path) -> Path:
    (root / "ml").mkdir(parents=True)
    (root / "ml" / "model.py").write_text("LAYERS = 2\n")
    (root / "params.yaml").write_text("train: {}\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)
    return root


def test_a_clean_tree_with_the_pipelines_own_lock_is_clean_and_says_where_the_lock_stands(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path / "repo")
    assert source_tree(repo)["dvc_lock"] == "absent"
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    tree = source_tree(repo)
    head = git_commit(repo)
    assert tree == {"commit": head, "changed": [], "dirty": False, "dvc_lock": "untracked"}
    subprocess.run([*GIT, "add", "dvc.lock"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "lock"], cwd=repo, check=True)
    assert source_tree(repo)["dvc_lock"] == "committed"
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert source_tree(repo) == {**source_tree(repo), "dirty": False, "dvc_lock": "modified"}


def test_a_changed_tracked_file_makes_the_tree_dirty_and_is_named(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (repo / "ml" / "model.py").write_text("LAYERS = 3\n")
    (repo / "notes.txt").write_text("untracked: not code the model ran\n")
    tree = source_tree(repo)
    assert tree["dirty"] is True and tree["changed"] == ["ml/model.py"]
    assert git_commit(repo).endswith("-dirty")


def test_outside_git_the_commit_is_unknown(tmp_path: Path) -> None:
    assert source_tree(tmp_path)["commit"] == "unknown"
