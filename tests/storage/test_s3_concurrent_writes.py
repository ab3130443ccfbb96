"""Eight processes writing eight days of one Delta table on S3 lose no row and no commit.

A commit on S3 is a put-if-absent of the next log entry (an S3 conditional write); a
store or a deltalake version without it lets two writers take the same version, and one
commit vanishes (delta-rs#3736 and #3622 were such losses). This test counts them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import polars as pl

from tests.conftest import PROJECT, day
from tests.storage.conftest import S3Platform

WORKER = textwrap.dedent(
    """
    import os, sys, dagster as dg
    from assets.ingestion import flights
    from orchestration.profiles import build_resources
    result = dg.materialize([flights], resources=build_resources(os.environ), partition_key=sys.argv[1])
    sys.exit(0 if result.success else 1)
    """
)
DAYS = [day(n) for n in range(1, 9)]


def test_eight_processes_write_eight_days_of_one_table_on_s3(s3_platform: S3Platform) -> None:
    p = s3_platform
    env = {**os.environ, **p.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, d.isoformat()],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for d in DAYS
    ]
    outputs = [proc.communicate(timeout=300)[0].decode() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), "\n".join(o[-2000:] for o in outputs)

    table = p.store.read("bronze/flights")
    rejects = p.store.read("bronze/flights_rejects")
    per_day = dict(table.group_by("flight_date").len().iter_rows())
    rejected = dict(rejects.group_by("day").len().iter_rows())
    for d in DAYS:
        landing = pl.read_csv(p.read_object("landing", f"landing/flights/{d}.csv"), infer_schema=False)
        assert per_day.get(d, 0) + rejected.get(d, 0) == landing.height, f"{d}: rows lost"
    assert set(per_day) == set(DAYS)

    # The table was created by whichever writer came first (version 0), then one commit per day.
    history = p.store.history("bronze/flights")
    writes = [h for h in history if h.get("dagster_partition")]
    assert sorted(h["dagster_partition"] for h in writes) == [d.isoformat() for d in DAYS]
    assert p.store.version("bronze/flights") == len(DAYS)
    log = [
        k for k in p.keys("lake") if k.startswith("lake/bronze/flights/_delta_log/") and k.endswith(".json")
    ]
    assert len(log) == len(DAYS) + 1
