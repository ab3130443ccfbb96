"""The registry from the command line.

python -m ml.registry.cli list
python -m ml.registry.cli rollback 3 --reason "v4 misbehaves"

The registry is the one the platform uses: PLATFORM_LAKE_URI, else PLATFORM_DATA_DIR/lake
(`ml.settings`), with PLATFORM_STORAGE_OPTIONS; `--lake` names another lake root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from ml.lake.delta import DeltaStore
from ml.lake.tables import REGISTRY_MODELS
from ml.registry.model_registry import ModelRegistry, RegistryError
from ml.settings import SettingsError, lake_settings
from ml.text_tables import text_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.registry.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lake", default="", help="lake root holding registry/models (default: the platform's)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every version with its status and test ROC AUC")
    back = commands.add_parser("rollback", help="make an earlier version the champion again")
    back.add_argument("version", type=int)
    back.add_argument("--reason", default="rollback")
    args = parser.parse_args(argv)
    try:
        lake = lake_settings(os.environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = ModelRegistry(DeltaStore(args.lake or lake.lake_uri, lake.storage_options or None))
    print(f"registry of {registry.store.uri(REGISTRY_MODELS)}", file=sys.stderr)
    try:
        if args.command == "rollback":
            previous = registry.rollback(args.version, args.reason, now=dt.datetime.now(dt.UTC))
            print(
                f"v{args.version} is the champion" + (f"; v{previous.version} archived" if previous else "")
            )
        rows = [
            {
                "version": m.version,
                "status": m.status,
                "test_roc_auc": m.metrics.get("test", {}).get("roc_auc", ""),
                "created_at": m.created_at.strftime("%Y-%m-%d %H:%M"),
                "training_set_md5": m.training_set_md5,
            }
            for m in registry.versions()
        ]
        print(text_table(rows))
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
