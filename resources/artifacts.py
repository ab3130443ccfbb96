"""Where model artifacts are kept: one folder per model, named by its content key."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from ml.registry.artifacts import ArtifactStore


class ArtifactsResource(dg.ConfigurableResource):
    """A folder or object-store URI (s3://bucket/models) holding one sub-folder per trained model.

    Credentials are not settings: pyarrow reads the standard AWS_* environment variables.
    """

    root: str = Field(description="Folder or URI holding one sub-folder per trained model.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="Non-secret storage options (endpoint, AWS_ALLOW_HTTP)."
    )
    staging_dir: str = Field(
        default="",
        description="Local working folder of training when `root` is an object store; default: a temp folder.",
    )

    def store(self) -> ArtifactStore:
        staging = Path(self.staging_dir or Path(tempfile.gettempdir()) / "platform-artifacts")
        return ArtifactStore(self.root, staging, self.storage_options or None)
