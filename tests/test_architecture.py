"""The import-linter contracts of pyproject.toml hold, and they do catch a forbidden import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestration", "assets", "resources", "ml", "serving", "devtools")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, check=False, timeout=120
    )


def copy_project(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_point_one_way() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


FORBIDDEN = {
    "ml.lake.storage": "dagster",
    "assets.training": "orchestration.jobs",
    "resources.lake": "assets.bronze",
    "serving.app": "resources",
    "orchestration.jobs": "devtools.services",
}
"""Importer -> imported: each pair breaks one contract (ml without dagster, the layers, serving, devtools)."""


@pytest.mark.parametrize("importer", FORBIDDEN)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, importer: str) -> None:
    root = copy_project(tmp_path)
    imported = FORBIDDEN[importer]
    path = root / (importer.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\nimport {imported}  # noqa\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert f"{importer} -> {imported}" in result.stdout, result.stdout
