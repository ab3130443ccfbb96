"""DVC: pins training-set snapshots and model artifacts, pushed to a remote."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from ml.registry.dvc_repo import DvcRepo


class DvcResource(dg.ConfigurableResource):
    """The DVC repository (the project's git checkout) and, optionally, the remote to push to.

    With `remote` empty the repository's default remote is used (`.dvc/config`: a local
    folder under `.data/`); any URL DVC accepts (s3://, a folder) can be set instead.
    """

    repo_root: str = Field(default=".", description="Root of the git + DVC repository.")
    remote: str = Field(default="", description="Remote URL overriding the repository's default remote.")
    executable: str = Field(default="", description="dvc program; default .venv/dvc/bin/dvc, else PATH.")
    endpoint_url: str = Field(
        default="", description="Endpoint of an S3-compatible store for an s3:// remote (not a secret)."
    )

    def repo(self) -> DvcRepo:
        return DvcRepo(Path(self.repo_root).resolve(), self.executable, self.remote, self.endpoint_url)

    def path(self, relative: str) -> Path:
        return Path(self.repo_root).resolve() / relative
