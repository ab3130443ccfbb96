"""deploy/serving.Dockerfile, checked against the server it runs: its packages are what `serving/` imports."""

from __future__ import annotations

import ast
import fnmatch
import json
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.deploy_files import (
    DEPLOY,
    REPO,
    final_stage,
    instructions,
)

DOCKERFILE = DEPLOY / "serving.Dockerfile"

# Imports `python -m serving` in a fresh interpreter (this one has Dagster loaded by other tests)
# and prints the project files it loaded and every top-level module that ended up in sys.modules.
LOAD_THE_SERVER = """
import json, sys
from pathlib import Path
import serving.__main__
root = Path.cwd().resolve()
files = set()
for module in list(sys.modules.values()):
    path = Path(getattr(module, "__file__", None) or "/").resolve()
    if path.is_file() and path.is_relative_to(root) and "site-packages" not in path.parts:
        files.add(path.relative_to(root).as_posix())
print(json.dumps({"files": sorted(files), "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def image_requirements() -> list[Requirement]:
    """The packages the build stage installs from the registry (the project itself goes in with --no-deps)."""
    [install] = [
        args
        for op, args in instructions(DOCKERFILE)
        if op == "RUN" and "pip install" in args and "--no-deps" not in args
    ]
    words = shlex.split(install)
    return [Requirement(word) for word in words[words.index("install") + 1 :] if not word.startswith("-")]


def server_imports() -> tuple[set[str], set[str], set[str]]:
    """(distributions the server's own modules import, its top-level packages, every module it loaded)."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_THE_SERVER], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout)
    own = {file.split("/")[0] for file in loaded["files"]}
    names: set[str] = set()
    for file in loaded["files"]:
        for node in ast.walk(ast.parse((REPO / file).read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    third_party = names - own - set(sys.stdlib_module_names)
    distributions = packages_distributions()
    unknown = sorted(name for name in third_party if name not in distributions)
    assert unknown == [], f"imported but not installed here: {unknown}"
    return {canonicalize_name(distributions[name][0]) for name in third_party}, own, set(loaded["modules"])


def test_the_image_installs_what_the_server_imports_and_neither_torch_nor_dagster() -> None:
    imported, own, loaded = server_imports()
    requirements = image_requirements()
    assert {canonicalize_name(r.name) for r in requirements} == imported
    assert not {"torch", "dagster", "dagster_pipes"} & loaded
    assert not [r.name for r in requirements if r.name == "torch" or r.name.startswith("dagster")]
    # The project's own packages the server loads are copied into the build.
    copied = {
        args.split()[0] for op, args in instructions(DOCKERFILE) if op == "COPY" and "--from=" not in args
    }
    assert own <= copied
    # `pip install --no-deps .` installs only the packages pyproject names.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(any(fnmatch.fnmatch(package, pattern) for pattern in include) for package in own), include
    # Same ranges as the project, so the image cannot drift from what the tests ran against.
    project = {
        canonicalize_name(req.name): req.specifier
        for req in map(Requirement, pyproject["project"]["dependencies"])
    }
    drift = [
        str(r)
        for r in requirements
        if canonicalize_name(r.name) in project and r.specifier != project[canonicalize_name(r.name)]
    ]
    assert drift == []


def test_the_image_starts_the_server_as_the_module_the_tests_load() -> None:
    [cmd] = [json.loads(args) for op, args in final_stage(DOCKERFILE) if op == "CMD"]
    assert cmd[:2] == ["python", "-m"] and LOAD_THE_SERVER.count(f"import {cmd[2]}.__main__") == 1
    assert not [op for op, _ in final_stage(DOCKERFILE) if op == "ENTRYPOINT"]
