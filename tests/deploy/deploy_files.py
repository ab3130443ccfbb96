"""Reading deploy/: its manifests, Helm values and Dockerfiles, shared by the deployment tests."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = DEPLOY / "k8s"
VALUES = DEPLOY / "helm" / "values.yaml"
K8S_INSTANCE = REPO / "orchestration" / "instance" / "k8s.yaml"
KUBERNETES_VERSION = "1.37.0"
NAMESPACE = "flightdelay"


def manifests() -> list[dict[str, Any]]:
    """Every object of deploy/k8s/, in file order."""
    objects: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        objects.extend(objects_in(path))
    return objects


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifests() if obj["kind"] == kind]


def objects_in(path: Path) -> list[dict[str, Any]]:
    """The objects of one manifest file, in file order."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def code_location() -> dict[str, Any]:
    [deployment] = values()["dagster-user-deployments"]["deployments"]
    return deployment


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage(path: Path) -> list[tuple[str, str]]:
    """The instructions of the stage that becomes the image."""
    steps = instructions(path)
    last = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last:]


def ignored(relative: str) -> bool:
    """Whether .dockerignore keeps a path of the repository out of the build context."""
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    return any(fnmatch.fnmatch(relative, p) or relative.startswith(p.rstrip("/") + "/") for p in patterns)


# Key names whose value is a secret when it is a literal (not a reference such as `env:`).
SECRET_KEY = re.compile(
    r"(password|passwd|secret_?access_?key|session_?token|api_?key|private_?key|^token$|credentials?$)",
    re.IGNORECASE,
)
# Names of environment variables whose value is a secret: a container's `env` entry
# `{name: ..._TOKEN, value: ...}` is a literal where a `valueFrom.secretKeyRef` belongs.
SECRET_ENV_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET_ACCESS_KEY|API_KEY|PRIVATE_KEY)$", re.IGNORECASE)
# Literal credentials whatever the key: AWS access key ids, PEM private keys, basic-auth URLs.
SECRET_TEXT = re.compile(
    r"(AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|://[^/\s:@]+:[^/\s@$]+@)",
)
ENV_LINE = re.compile(r"^\s*(?:ENV|ARG)\s+(.*)$", re.MULTILINE)
FROM_LITERAL = re.compile(r"--from-literal=([^=\s]+)=(\S+)")


def secret_literals_in_yaml(node: Any, path: str = "") -> Iterator[str]:
    """Paths of mapping keys that name a secret and hold a literal scalar instead of a reference."""
    if isinstance(node, dict):
        if SECRET_ENV_NAME.search(str(node.get("name", ""))) and node.get("value") not in (None, ""):
            yield f"{path}.value ({node['name']})"
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            literal = isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""
            if SECRET_KEY.search(str(key)) and literal:
                yield where
            yield from secret_literals_in_yaml(value, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from secret_literals_in_yaml(item, f"{path}[{index}]")


def secret_literals_in_text(name: str, text: str) -> Iterator[str]:
    """Secret-looking literals in a Dockerfile or a README: credentials, ENV/ARG, kubectl literals."""
    for match in SECRET_TEXT.finditer(text):
        yield f"{name}: {match.group(0)[:12]}..."
    for match in ENV_LINE.finditer(text):
        for assignment in re.findall(r"(\w+)=(\S+)", match.group(1)):
            if SECRET_KEY.search(assignment[0]):
                yield f"{name}: ENV/ARG {assignment[0]}"
    for key, value in FROM_LITERAL.findall(text):
        if not re.fullmatch(r"\"?\$\{?\w+\}?\"?", value):
            yield f"{name}: --from-literal={key}=<a literal>"


def secret_literals(root: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_text()
        name = str(path.relative_to(root))
        if path.suffix in {".yaml", ".yml"}:
            for doc in yaml.safe_load_all(text):
                found.extend(f"{name}: {where}" for where in secret_literals_in_yaml(doc))
        found.extend(secret_literals_in_text(name, text))
    return found
