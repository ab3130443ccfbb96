"""Snapshot the feature table into a training set (what `dvc repro training_set` runs).

python -m ml.training.make_training_set --lake .data/lake --out data/training_set [--cutoff 2013-12-31]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from ml.lake.delta import DeltaStore
from ml.training.params import cutoff, load_params, split_sizes
from ml.training.training_set import TrainingSetError, snapshot_from_lake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.training.make_training_set", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--lake", required=True, help="lake root (folder or URI) holding features/flight_features"
    )
    parser.add_argument("--out", type=Path, required=True, help="snapshot folder to (re)write")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--cutoff", type=dt.date.fromisoformat, default=None, help="last day (default: params, else latest)"
    )
    args = parser.parse_args(argv)
    params = load_params(args.params)
    try:
        manifest = snapshot_from_lake(
            DeltaStore(args.lake), args.out, args.cutoff or cutoff(params), split_sizes(params)
        )
    except TrainingSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest["splits"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
