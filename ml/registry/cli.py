"""The registry from the command line.

python -m ml.registry.cli list
python -m ml.registry.cli rollback 3 --reason "v4 misbehaves"
python -m ml.registry.cli promote 5 --reason "passed its gate while promotions were frozen"
python -m ml.registry.cli freeze --reason "holiday traffic: no model changes"
python -m ml.registry.cli unfreeze

`promote` takes only a version that passed its gate and is refused while promotions are
frozen; `rollback` (to a version that passed its gate or served before) stays allowed.
The registry is the one the platform uses: PLATFORM_LAKE_URI, else PLATFORM_DATA_DIR/lake
(`ml.settings`), with PLATFORM_STORAGE_OPTIONS; `--lake` names another lake root and
`--artifacts` the artifacts root its models are under (PLATFORM_ARTIFACTS_URI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys

from ml.lake.delta import DeltaStore
from ml.lake.tables import REGISTRY_MODELS
from ml.registry.model_registry import UNFREEZE_HINT, ModelRegistry, RegistryError, gate_of
from ml.settings import SettingsError, lake_settings
from ml.text_tables import text_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.registry.cli",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--lake", default="", help="lake root holding registry/models (default: the platform's)"
    )
    parser.add_argument(
        "--artifacts",
        default="",
        help="artifacts root the registry's model keys are under (default: the platform's)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every version with its status, gate and test ROC AUC; the freeze")
    back = commands.add_parser("rollback", help="make an earlier version the champion again")
    back.add_argument("version", type=int)
    back.add_argument("--reason", default="rollback")
    promote = commands.add_parser("promote", help="make a version that passed its gate the champion")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="promoted from the command line")
    freeze = commands.add_parser("freeze", help="stop promotions (rollbacks stay allowed)")
    freeze.add_argument("--reason", required=True)
    commands.add_parser("unfreeze", help="allow promotions again")
    return parser


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown operator"


def _change(registry: ModelRegistry, args: argparse.Namespace, now: dt.datetime) -> str:
    """Apply the command's change; what it did, for the terminal."""
    if args.command in ("rollback", "promote"):
        change = registry.rollback if args.command == "rollback" else registry.promote_passed
        previous = change(args.version, args.reason, now=now)
        return f"v{args.version} is the champion" + (f"; v{previous.version} archived" if previous else "")
    if args.command == "freeze":
        return registry.freeze(args.reason, now=now, by=_operator()).describe()
    if args.command == "unfreeze":
        lifted = registry.unfreeze(now=now, by=_operator())
        return "promotions are allowed again" if lifted else "promotions were not frozen"
    return ""


def _gate(gate: dict | None) -> str:
    return "" if gate is None else ("passed" if gate["passed"] else "failed")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        lake = lake_settings(os.environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = ModelRegistry(
        DeltaStore(args.lake or lake.lake_uri, lake.storage_options or None),
        args.artifacts or lake.artifacts_uri,
        f"cli by {_operator()}",
    )
    print(f"registry of {registry.store.uri(REGISTRY_MODELS)}", file=sys.stderr)
    try:
        done = _change(registry, args, dt.datetime.now(dt.UTC))
        if done:
            print(done)
        rows = [
            {
                "version": m.version,
                "status": m.status,
                "gate": _gate(gate_of(m)),
                "test_roc_auc": m.metrics.get("test", {}).get("roc_auc", ""),
                "created_at": m.created_at.strftime("%Y-%m-%d %H:%M"),
                "training_set_md5": m.training_set_md5,
            }
            for m in registry.versions()
        ]
        print(text_table(rows))
        freeze = registry.frozen()
        print(f"\n{freeze.describe()} (unfreeze: {UNFREEZE_HINT})" if freeze else "\npromotions: allowed")
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
