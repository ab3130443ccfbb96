"""dvc.yaml's stages depend on the code that makes their outputs, so DVC reruns them when it changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import PROJECT

SHAPING = ("ml/training/", "ml/evaluation/")
"""Where the code that decides a stage's bytes lives; lake access, settings and the registry's
names are how the data is reached or reported, not what it becomes."""

IMPORTED = """
import importlib, json, pathlib, sys
importlib.import_module(sys.argv[1])
root = pathlib.Path.cwd().resolve()
files = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and pathlib.Path(path).resolve().is_relative_to(root / "ml"):
        files.add(pathlib.Path(path).resolve().relative_to(root).as_posix())
print(json.dumps(sorted(files)))
"""


def imported_files(module: str) -> list[str]:
    """The project's files a fresh interpreter loads to import `module` (package __init__s left out)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, module], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    return [f for f in json.loads(done.stdout) if not f.endswith("__init__.py")]


def stage(name: str) -> dict:
    return yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"][name]


@pytest.mark.parametrize(
    ("name", "module"), [("train", "ml.training.train"), ("training_set", "ml.training.make_training_set")]
)
def test_a_stage_depends_on_every_module_that_shapes_its_output(name: str, module: str) -> None:
    command = stage(name)["cmd"].split()
    assert command[:3] == ["python", "-m", module], command
    shaping = [f for f in imported_files(module) if f.startswith(SHAPING)]
    assert f"{module.replace('.', '/')}.py" in shaping
    missing = sorted(set(shaping) - set(stage(name)["deps"]))
    assert not missing, f"dvc.yaml stage {name} does not list {missing} in its deps"


def test_every_listed_dependency_exists_or_is_made_by_a_stage() -> None:
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    made = {out for body in stages.values() for out in body.get("outs", [])}
    for name, body in stages.items():
        for dep in body.get("deps", []):
            assert dep in made or (PROJECT / dep).is_file(), f"dvc.yaml stage {name}: {dep} does not exist"
