"""Model artifacts: one folder per model, named by its content key, in a folder or a bucket.

Training always writes to a local folder (the entrypoint, ONNX export and checkpoints
work on files). With a local root that folder is the artifact folder itself; with an
object-store root it is a working copy under `staging`, published (without its
checkpoints) once training is done, and readers check out a temporary local copy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ml.lake.storage import copy_tree, exists, has_scheme, join_uri

CHECKPOINTS = "checkpoints"
TIMINGS = "timings.json"
"""Wall-clock facts of a training run (seconds and samples/s per epoch), written beside the model
files but not pinned with them: the model md5 is of content alone, so a retraining can give it
again. The registry keeps the timings beside the metrics."""
UNPINNED = (CHECKPOINTS, TIMINGS)
"""What a model folder holds that is no part of the model DVC pins."""


class ArtifactsMissingError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class ArtifactStore:
    root: str
    staging: Path
    storage_options: dict[str, str] | None = None

    @property
    def remote(self) -> bool:
        return has_scheme(self.root)

    def uri(self, key: str) -> str:
        return join_uri(self.root, key)

    def work_folder(self, key: str) -> Path:
        """Where training writes model `key`; stable, so a retried step finds its checkpoints."""
        return Path(self.uri(key)) if not self.remote else self.staging.resolve() / key

    def publish(self, folder: Path, uri: str) -> str:
        """Make a local folder's files (checkpoints excluded) the content of `uri`; returns `uri`."""
        if has_scheme(uri) or Path(uri).resolve() != folder.resolve():
            copy_tree(str(folder), uri, self.storage_options, skip=(CHECKPOINTS,))
        return uri

    @contextmanager
    def checkout(self, uri: str) -> Iterator[Path]:
        """A local folder holding the artifacts at `uri`: the folder itself, or a temporary copy."""
        if not exists(uri, self.storage_options):
            raise ArtifactsMissingError(f"model artifacts {uri} do not exist")
        if not has_scheme(uri):
            yield Path(uri)
            return
        self.staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.staging, prefix=".checkout-") as tmp:
            copy_tree(uri, tmp, self.storage_options)
            yield Path(tmp)
