"""The lake: every Delta read and write of the assets goes through this resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ml.lake.delta import DeltaStore


class LakeResource(dg.ConfigurableResource):
    """Delta tables under `root`: a local folder, or any URI deltalake accepts (s3://, az://, gs://).

    `storage_options` are passed to deltalake as they are; credentials are better left to
    the standard environment variables (AWS_ACCESS_KEY_ID, ...) that deltalake reads itself.
    """

    root: str = Field(description="Folder or URI under which each table is a sub-path, e.g. bronze/flights.")
    storage_options: dict[str, str] = Field(default_factory=dict)

    def store(self) -> DeltaStore:
        return DeltaStore(root=self.root, storage_options=self.storage_options or None)
