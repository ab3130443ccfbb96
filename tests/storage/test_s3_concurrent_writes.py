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
import threading

import polars as pl
import pyarrow as pa

from ml.lake.delta import DeltaStore
from tests.conftest import PROJECT, day
from tests.storage.conftest import S3Platform

WORKER = textwrap.dedent(
    """
    import os, sys, dagster as dg
    from assets.bronze import flights
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


def race_to_create(store: DeltaStore, table: str, writers: int = 8) -> list[BaseException]:
    """`writers` threads released together, each making sure the table exists."""
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []
    schema = pa.schema([("day", pa.date32()), ("value", pa.int64())])

    def create() -> None:
        barrier.wait()
        try:
            store.ensure_table(table, schema)
        except BaseException as exc:  # collected: a thread's error must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_writers_racing_to_create_a_table_on_s3_leave_one_create_commit(s3_buckets: S3Platform) -> None:
    """Eight writers released at once onto a table that does not exist yet, five times over.

    The losers of the create must not commit a second CREATE TABLE at the next version
    (delta-rs retries a create that lost its put-if-absent on S3 unless told not to).
    """
    store = s3_buckets.store
    for trial in range(5):
        table = f"race/t{trial}"
        assert race_to_create(store, table) == []
        assert [h["operation"] for h in store.history(table)] == ["CREATE TABLE"]
        assert store.version(table) == 0
