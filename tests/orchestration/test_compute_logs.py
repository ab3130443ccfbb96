"""The local profile's compute logs: what a step prints is in the files the UI reads, with no mirror process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from devtools.services import INSTANCE_TEMPLATE, PROJECT
from orchestration.compute_logs import FileComputeLogManager

# Run in a process of its own so that stdout is file descriptor 1, as in a run worker
# (under pytest's capture it is not, and a child process would write past the capture).
RUN = textwrap.dedent(
    """
    import subprocess, sys
    import dagster as dg
    import dagster._core.execution.compute_logs as compute_logs

    def no_mirror(*args, **kwargs):
        raise AssertionError("the local profile must not start tail mirror processes")

    compute_logs.tail_to_stream = no_mirror

    @dg.asset
    def talkative() -> None:
        print("stdout line from the step", flush=True)
        print("stderr line from the step", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-c", "print('line from a child process')"], check=True)

    result = dg.materialize([talkative], instance=dg.DagsterInstance.get())
    print("RUN_ID", result.run_id, result.success, file=sys.__stderr__)
    """
)


def local_instance_home(home: Path) -> Path:
    home.mkdir()
    settings = yaml.safe_load(INSTANCE_TEMPLATE.read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({"compute_logs": settings["compute_logs"]}))
    return home


def test_a_steps_output_and_its_childrens_are_captured_without_tail_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = local_instance_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    done = subprocess.run(
        [sys.executable, "-c", RUN],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_line = next(line for line in done.stderr.splitlines() if line.startswith("RUN_ID"))
    _, run_id, success = run_line.split()
    assert success == "True"

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    manager = instance.compute_log_manager
    assert isinstance(manager, FileComputeLogManager)
    captured = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED)
        if e.dagster_event
    ]
    assert len(captured) == 1
    log_key = manager.build_log_key_for_run(run_id, captured[0].file_key)  # type: ignore[union-attr]
    assert manager.is_capture_complete(log_key)
    assert Path(manager.get_captured_local_path(log_key, "out")).is_relative_to(home / "storage")
    data = manager.get_log_data(log_key)
    stdout, stderr = (data.stdout or b"").decode(), (data.stderr or b"").decode()
    assert "stdout line from the step" in stdout
    assert "line from a child process" in stdout
    assert "stderr line from the step" in stderr
    assert "stdout line from the step" not in done.stdout


def test_without_dagster_home_the_manager_needs_its_folder_in_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(ValueError, match=r"base_dir .* or DAGSTER_HOME"):
        FileComputeLogManager.from_config_value(None, {})
    manager = FileComputeLogManager.from_config_value(None, {"base_dir": str(tmp_path / "logs")})
    assert manager._base_dir == str(tmp_path / "logs")
