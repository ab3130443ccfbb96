"""Control-plane overhead of the daily run, launched as the UI launches it.

    python -m benchmarks.control_plane [--quick] [--storage sqlite|postgres]

`dagster-webserver` and `dagster-daemon` run as processes on 127.0.0.1; the daily
ingestion job (bronze flights and weather, features) of one partition is launched through
GraphQL, queued, and run by the daemon in a run worker process. From the run's own stats:
overhead = (run wall time - the steps' compute time) ÷ run wall time, where the run wall
time is RUN_START to RUN_SUCCESS and a step's compute time is STEP_START to its end. Also
reported: the time from the launch request to RUN_START (queueing and starting a process),
which a user waits for but the ratio leaves out. Target: overhead <= 10% for the daily run.

`--storage postgres` measures the same on the `k8s` profile's storage (its section of
`orchestration/instance/k8s.yaml`) over a PostgreSQL server started on 127.0.0.1 for the
run, instead of the local profile's SQLite: every event of a run is a write to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg

from assets.partitions import range_tags
from benchmarks.common import Report, arguments, replay_landing
from devtools.postgres import k8s_storage, local_postgres
from devtools.services import dagster_services
from orchestration.definitions import build_definitions

TARGET = 0.10
HISTORY_FIRST, HISTORY_LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 28)
STORAGES = ("sqlite", "postgres")


def _storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", choices=STORAGES, default="sqlite", help="the instance's storage (default: sqlite)"
    )


@contextmanager
def instance_storage(kind: str) -> Iterator[dict[str, Any] | None]:
    """The storage section for `dagster_services`; for PostgreSQL, a server whose settings are in the environment."""
    if kind == "sqlite":
        yield None
        return
    with local_postgres() as server, mock.patch.dict(os.environ, server.env):
        yield k8s_storage()


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv, _storage_option)
    report = Report(
        "control_plane" if args.storage == "sqlite" else f"control_plane_{args.storage}", args.quick
    )
    days = [HISTORY_LAST + dt.timedelta(days=i) for i in range(1, 3 if args.quick else 12)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        root = Path(tmp)
        data = root / "data"
        replay_landing(root / "source", HISTORY_FIRST, days[-1])
        shutil.copytree(root / "source", data / "landing")
        env = {"PLATFORM_DATA_DIR": str(data)}
        with instance_storage(args.storage) as storage, dagster_services(root, env, storage) as services:
            instance = dg.DagsterInstance.from_config(str(services.home))
            defs = build_definitions(env)
            assert defs.resolve_job_def("reference_data").execute_in_process(instance=instance).success
            history = range_tags(HISTORY_FIRST, HISTORY_LAST)
            assert (
                defs.resolve_job_def("daily_ingestion")
                .execute_in_process(instance=instance, tags=history)
                .success
            )
            for day in days:
                requested = time.time()
                run_id = services.launch_run("daily_ingestion", {"dagster/partition": day.isoformat()})
                stats = services.wait_for_run(run_id)
                assert stats["status"] == "SUCCESS", stats
                wall = stats["endTime"] - stats["startTime"]
                steps = sum(s["endTime"] - s["startTime"] for s in stats["stepStats"])
                rows.append(
                    {
                        "partition": day.isoformat(),
                        "launch -> RUN_START": f"{stats['startTime'] - requested:.2f} s",
                        "run wall": f"{wall:.3f} s",
                        "steps' compute": f"{steps:.3f} s",
                        "overhead": f"{(wall - steps) / wall:.1%}",
                    }
                )
    overheads = [float(r["overhead"].rstrip("%")) / 100 for r in rows]
    title = "Daily run of one partition, launched through GraphQL and run by the daemon"
    report.table(title if args.storage == "sqlite" else f"{title} ({args.storage} storage)", rows)
    report.headline("daily run: (wall - steps' compute) ÷ wall", statistics.median(overheads), TARGET)
    return report.finish(args.json)


if __name__ == "__main__":
    main()
