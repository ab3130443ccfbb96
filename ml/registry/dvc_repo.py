"""DVC through its command line, run from its own virtual environment.

DVC's hydra dependency pins an ANTLR runtime that breaks Dagster's, so DVC lives in a
separate environment (`.venv/dvc`, made by `make`) and is only ever called as a program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

TRAINING_SET_PATH = "data/training_set"
"""Output of the `training_set` stage of dvc.yaml, relative to the repository root."""
MODEL_PATH = "data/model"
"""Output of the `train` stage of dvc.yaml."""
PARAMS_FILE = "params.yaml"


class DvcError(RuntimeError):
    pass


def default_executable() -> str:
    bundled = Path(sys.prefix) / "dvc" / "bin" / "dvc"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("dvc")
    if found is None:
        raise DvcError(
            "no dvc executable: run `make venv` (it installs DVC into .venv/dvc) or put dvc on PATH"
        )
    return found


@dataclass(frozen=True)
class LockedOutput:
    path: str
    md5: str
    size: int
    nfiles: int


@dataclass(frozen=True)
class DvcRepo:
    root: Path
    executable: str = ""
    remote: str = ""
    endpoint_url: str = ""

    def run(self, *args: str) -> str:
        """Run dvc in the repository with this interpreter's folder first on PATH (for `dvc repro`)."""
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        command = [self.executable or default_executable(), *args]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise DvcError(
                f"`dvc {' '.join(args)}` failed in {self.root}:\n{(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def remote_name(self) -> str:
        """The remote to use: the configured URL as remote `platform`, else the default remote."""
        return self._remote()[0]

    def check_remote(self) -> str:
        """The remote's URL, after checking that a local remote's folder exists."""
        return self._remote()[1]

    def _remote(self) -> tuple[str, str]:
        """Name and URL of the remote, configured first when the resource names a URL.

        A configured URL goes into `.dvc/config.local` (not committed) as remote `platform`
        with, for an s3:// URL, the endpoint of an S3-compatible store; credentials are
        never written: DVC reads the AWS_* environment variables itself.
        """
        if self.remote:
            name, location = "platform", self.remote
            self.run("remote", "add", "--local", "--force", name, location)
            if self.endpoint_url and location.startswith("s3://"):
                self.run("remote", "modify", "--local", name, "endpointurl", self.endpoint_url)
        else:
            listed = self.run("remote", "list").split()
            name = self.run("config", "core.remote").strip() if listed else ""
            if not name:
                raise DvcError(
                    f"no DVC remote is configured in {self.root}: set one with `dvc remote add -d NAME URL` "
                    "or the dvc resource's `remote`"
                )
            location = self.run("config", f"remote.{name}.url").strip()
        if location and "://" not in location:
            folder = Path(location) if Path(location).is_absolute() else self.root / ".dvc" / location
            if not folder.is_dir():
                raise DvcError(f"DVC remote {name!r} is missing: folder {folder} does not exist")
        return name, location

    def commit(self, stage: str) -> None:
        self.run("commit", "--force", "--quiet", stage)

    def push(self, stage: str) -> None:
        self.run("push", "--quiet", "--remote", self.remote_name(), stage)

    def locked_output(self, stage: str, path: str) -> LockedOutput:
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())
        for out in lock["stages"][stage]["outs"]:
            if out["path"] == path:
                return LockedOutput(path, out["md5"], int(out["size"]), int(out["nfiles"]))
        raise DvcError(f"dvc.lock has no output {path} for stage {stage}")

    def restore(self, md5: str, destination: Path) -> Path:
        """Fetch a directory by its DVC md5 from the remote into `destination` (which must not exist)."""
        if destination.exists():
            raise DvcError(f"refusing to restore into {destination}: it exists")
        remote = self.remote_name()
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".restore-") as tmp:
            pointer = Path(tmp) / "restore.dvc"
            pointer.write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": "data", "hash": "md5"}]}))
            try:
                self.run("pull", "--quiet", "--remote", remote, str(pointer.relative_to(self.root)))
            except DvcError as exc:
                raise DvcError(f"could not restore {md5} from the DVC remote: {exc}") from exc
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "data"), destination)
        return destination


def init_pipeline_repo(
    repo: Path, project: Path, remote: Path, params_override: dict[str, dict] | None = None
) -> DvcRepo:
    """A new git + DVC repository holding the project's pipeline (dvc.yaml, params, ml/) and a local remote.

    For work that must not touch the project's own repository: tests, simulations, a
    scratch retraining. `params_override` replaces keys of params.yaml sections.
    """
    repo.mkdir(parents=True)
    shutil.copy(project / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(project / "ml", repo / "ml", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in (params_override or {}).items():
        params.setdefault(section, {}).update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=platform", "-c", "user.email=platform@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "pipeline"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    dvc = DvcRepo(repo)
    dvc.run("init", "-q")
    remote.mkdir(parents=True, exist_ok=True)
    dvc.run("remote", "add", "-d", "local", str(remote))
    return dvc
