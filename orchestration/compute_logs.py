"""Captured stdout/stderr of runs, written where the UI reads them, without mirroring.

Dagster's `LocalComputeLogManager` mirrors each captured stream back to the run worker's
own stdout/stderr through a `tail -F` process plus a Python process that watches for
orphans: four extra processes per run. On a small machine starting them costs about as
much as a daily run's whole control plane. The local profile writes the streams to the
same files instead, which is all the UI shows; the run worker's own output (visible only
in the daemon's log) no longer repeats them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster._config import Field, StringSource
from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file


def default_base_dir() -> str:
    """Where Dagster keeps compute logs by default: `$DAGSTER_HOME/storage`."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise ValueError("FileComputeLogManager needs base_dir in its config or DAGSTER_HOME set")
    return str(Path(home) / "storage")


class FileComputeLogManager(LocalComputeLogManager):
    """`LocalComputeLogManager` that redirects stdout/stderr to their files without `tail` mirrors."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "base_dir": Field(StringSource, is_required=False),
            "polling_timeout": Field(float, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> FileComputeLogManager:
        config = dict(config_value)
        if "base_dir" not in config:
            config["base_dir"] = default_base_dir()
        return cls(inst_data=inst_data, **config)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        ensure_file(outpath)
        ensure_file(errpath)
        with redirect_to_file(sys.stdout, outpath), redirect_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))
