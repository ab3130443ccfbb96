"""deploy/*.Dockerfile, checked without Docker: sources exist, non-root, pinned torch, the right entrypoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.deploy_files import DEPLOY, REPO, final_stage, ignored, instructions

DOCKERFILES = sorted(DEPLOY.glob("*.Dockerfile"))
# The model server's image has no torch (tests/deploy/test_serving_manifests.py checks it).
TORCH_IMAGES = [DEPLOY / "code-location.Dockerfile", DEPLOY / "training.Dockerfile"]


def test_the_three_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "code-location.Dockerfile",
        "serving.Dockerfile",
        "training.Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_source_is_in_the_build_context(dockerfile: Path) -> None:
    copies = [args for op, args in instructions(dockerfile) if op == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        *sources, _target = args.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_as_a_non_root_user(dockerfile: Path) -> None:
    users = [args for op, args in final_stage(dockerfile) if op == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Numeric, so Kubernetes can check runAsNonRoot without resolving a name.
    assert user.isdigit() and int(user) == 1000


@pytest.mark.parametrize("dockerfile", TORCH_IMAGES, ids=lambda p: p.name)
def test_torch_is_the_version_the_project_installs(dockerfile: Path) -> None:
    makefile = (REPO / "Makefile").read_text()
    [pinned] = set(re.findall(r"torch==([\d.]+)", makefile))
    assert re.findall(r"torch==([\d.]+)", dockerfile.read_text()) == [pinned]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_and_python_matches_the_project(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base.startswith("python:3.11-") and ":latest" not in base
    assert all(args.split()[0] == "${PYTHON_IMAGE}" for op, args in instructions(dockerfile) if op == "FROM")


def test_the_code_location_image_serves_the_definitions_on_port_4000() -> None:
    steps = final_stage(DEPLOY / "code-location.Dockerfile")
    [cmd] = [json.loads(args) for op, args in steps if op == "CMD"]
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-p") + 1] == "4000" and cmd[cmd.index("-m") + 1] == "orchestration.definitions"
    assert ("EXPOSE", "4000") in steps
    # The CPU build of torch: this image never trains on a GPU.
    assert "download.pytorch.org/whl/cpu" in (DEPLOY / "code-location.Dockerfile").read_text()


def test_the_training_image_runs_the_training_entrypoint() -> None:
    steps = final_stage(DEPLOY / "training.Dockerfile")
    [entrypoint] = [json.loads(args) for op, args in steps if op == "ENTRYPOINT"]
    assert entrypoint == ["python", "-m", "ml.training.train"]
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "NVIDIA_VISIBLE_DEVICES" not in env  # left to the device plugin


def test_the_build_context_leaves_local_state_out() -> None:
    for local in (".venv", ".data", ".dagster", ".git", "tests"):
        assert ignored(local), local
    assert not ignored("ml") and not ignored("pyproject.toml")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_image_copies_the_dev_tooling(dockerfile: Path) -> None:
    copies = [args for op, args in instructions(dockerfile) if op == "COPY" and "--from=" not in args]
    sources = [source.rstrip("/") for args in copies for source in args.split()[:-1]]
    assert sources
    for source in sources:
        assert source != "." and not source.startswith(("devtools", "tests", "benchmarks")), source
    assert ignored("devtools"), "devtools/ must stay out of the build context"
