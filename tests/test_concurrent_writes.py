"""Parallel runs writing different days of one Delta table lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

from tests.conftest import Platform, day

REPO = Path(__file__).resolve().parents[1]
WORKER = textwrap.dedent(
    """
    import sys, dagster as dg
    from tests.conftest import ASSETS, Platform
    from pathlib import Path
    root, key = sys.argv[1], sys.argv[2]
    result = dg.materialize(ASSETS, selection=["bronze/flights"], resources=Platform(Path(root)).resources,
                            partition_key=key)
    sys.exit(0 if result.success else 1)
    """
)


def test_eight_processes_write_eight_days_of_one_table(platform: Platform) -> None:
    platform.bronze(day(1))
    days = [day(n) for n in range(2, 10)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(platform.root), d.isoformat()],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for d in days
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)

    table = platform.store.read("bronze/flights")
    per_day = dict(table.group_by("flight_date").len().iter_rows())
    for d in [day(1), *days]:
        landing = pl.read_csv(platform.landing_dir / "flights" / f"{d}.csv", infer_schema=False)
        assert per_day.get(d) == landing.height, (
            f"{d}: table has {per_day.get(d)} rows, landing {landing.height}"
        )
    assert table.height == sum(per_day.values())

    history = platform.store.history("bronze/flights")
    writes = [h for h in history if h.get("dagster_partition") in {d.isoformat() for d in days}]
    assert sorted(h["dagster_partition"] for h in writes) == sorted(d.isoformat() for d in days)
    assert all(json.dumps(h.get("dagster_run_id")) != "null" for h in writes)
