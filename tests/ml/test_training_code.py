"""A reproduction retrains with the training code of the model's commit, not the checkout's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ml.registry.training_code import training_code

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]


def commit_all(repo: Path, message: str) -> str:
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "ml" / "training").mkdir(parents=True)
    subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    (repo / "ml" / "__init__.py").write_text("")
    (repo / "ml" / "training" / "train.py").write_text("LOOP = 'as registered'\n")
    (repo / "README.md").write_text("not code\n")
    return repo


def test_the_commits_code_is_extracted_whatever_the_tree_holds_now(repo: Path, tmp_path: Path) -> None:
    registered = commit_all(repo, "the code v1 was trained with")
    (repo / "ml" / "training" / "train.py").write_text("LOOP = 'changed since'\n")
    commit_all(repo, "a new loop")
    (repo / "ml" / "training" / "train.py").write_text("LOOP = 'uncommitted'\n")

    code = training_code(repo, registered, tmp_path / "code")
    assert code.folder == tmp_path / "code"
    assert (code.folder / "ml" / "training" / "train.py").read_text() == "LOOP = 'as registered'\n"
    assert (code.folder / "ml" / "__init__.py").is_file()
    assert not (code.folder / "README.md").exists(), "only the ml package is extracted"
    assert registered[:12] in code.note


@pytest.mark.parametrize(
    ("commit", "reason"),
    [
        ("unknown", "trained outside git"),
        ("", "trained outside git"),
        ("HEAD-dirty", "uncommitted changes"),
        ("0" * 40, "is not in the repository"),
    ],
)
def test_without_a_clean_known_commit_the_checkouts_code_is_used_and_said(
    repo: Path, tmp_path: Path, commit: str, reason: str
) -> None:
    head = commit_all(repo, "code")
    commit = commit.replace("HEAD", head)
    code = training_code(repo, commit, tmp_path / "code")
    assert code.folder is None
    assert reason in code.note and "this checkout's code" in code.note
    assert not (tmp_path / "code").exists()


def test_a_commit_without_the_training_entrypoint_is_not_used(repo: Path, tmp_path: Path) -> None:
    (repo / "ml" / "training" / "train.py").unlink()
    commit = commit_all(repo, "no training code in this repository")
    code = training_code(repo, commit, tmp_path / "code")
    assert code.folder is None and "holds no ml/training/train.py" in code.note


def test_outside_a_git_repository_the_checkouts_code_is_used(tmp_path: Path) -> None:
    code = training_code(tmp_path, "a" * 40, tmp_path / "code")
    assert code.folder is None and "not in the repository" in code.note
