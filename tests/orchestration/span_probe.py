"""Run in a subprocess with PLATFORM_FIRST_DAY / PLATFORM_LAST_DAY set, since the partitions
are read when the code location loads: prints, as JSON, what the definitions do at a given
instant (the schedule's request, the landing sensor's requests and quarantine reasons).

    python -m tests.orchestration.span_probe schedule 2026-12-01T06:30:00-05:00
    python -m tests.orchestration.span_probe sensor LANDING QUARANTINE   # on the real clock
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import dagster as dg

from assets.partitions import RANGE_END, RANGE_START, SPAN, daily_partitions
from orchestration import sensors
from orchestration.definitions import build_definitions
from resources import LandingResource, LandingWatch


def last_partition(at: dt.datetime) -> str | None:
    with dg.partition_loading_context(effective_dt=at):
        return daily_partitions.get_last_partition_key()


def schedule(at: dt.datetime) -> dict[str, object]:
    defs = build_definitions()
    definition = defs.resolve_schedule_def("daily_ingestion_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
        requests = list(definition.evaluate_tick(context).run_requests or [])
    return {
        "first": str(SPAN.first),
        "open_ended": SPAN.open_ended,
        "last_partition": last_partition(at),
        "requested": [r.partition_key for r in requests],
    }


def sensor(landing: str, quarantine: str) -> dict[str, object]:
    context = dg.build_sensor_context(
        resources={
            "landing": LandingResource(root=landing, quarantine_root=quarantine),
            "landing_watch": LandingWatch(settle_seconds=0),
        },
    )
    result = sensors.landing_sensor(context)
    return {
        "requests": sorted(
            [
                "+".join(k.to_user_string() for k in r.asset_selection or []),
                r.tags[RANGE_START],
                r.tags[RANGE_END],
            ]
            for r in result.run_requests or []
        )
    }


def main(argv: list[str]) -> int:
    what, args = argv[0], argv[1:]
    out = schedule(dt.datetime.fromisoformat(args[0])) if what == "schedule" else sensor(*args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
