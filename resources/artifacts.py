"""Where model artifacts are kept: one folder per model, named by its content key."""

from pathlib import Path

import dagster as dg
from pydantic import Field


class ArtifactStore(dg.ConfigurableResource):
    root: str = Field(description="Folder holding one sub-folder per trained model.")

    def folder(self, key: str) -> Path:
        return Path(self.root).resolve() / key
