"""Trace a prediction or a model version down to its landing files, checking every link.

python -m ml.lineage --request-id 6f1c...   # a logged prediction (X-Request-Id of the answer)
python -m ml.lineage --version 3            # a registered model

Each link is checked against the stored bytes: DVC restores the training set and model by
their md5s, the published artifacts must equal the pinned model, the feature table at its
registered version must hold the training set's rows, and every landing file of the
training window must still have the md5 and rows its bronze commit recorded. Exit 0 when
every link holds, 1 naming each broken one, 2 when the start (request, version) is unknown.
Locations default to the platform's settings (`ml.settings`: PLATFORM_DATA_DIR, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ml.ingest.landing_zone import LandingZone
from ml.lake.delta import DeltaStore
from ml.lineage.chain import Chain, Sources, model_chain, request_chain
from ml.registry.dvc_repo import DvcError, DvcRepo
from ml.registry.model_registry import ModelRegistry, RegistryError
from ml.settings import SettingsError, lake_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.lineage",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--request-id", help="a prediction's request id (the answer's X-Request-Id)")
    start.add_argument("--version", type=int, help="a registered model version")
    parser.add_argument("--lake", default="", help="lake root (default: the platform's)")
    parser.add_argument("--landing", default="", help="landing zone root (default: the platform's)")
    parser.add_argument("--artifacts", default="", help="artifacts root (default: the platform's)")
    parser.add_argument("--repo", type=Path, default=Path(), help="git + DVC repository")
    parser.add_argument("--dvc-remote", default="", help="DVC remote URL (default: the repository's)")
    return parser


def render(chain: Chain) -> str:
    lines = [f"{'ok  ' if link.ok else 'FAIL'} {link.name}: {link.detail}" for link in chain.links]
    lines += [f"     {'' if link.ok else '-> ' + link.problem}" for link in chain.links if not link.ok]
    lines.append(f"landing files ({len(chain.landing)}):")
    lines += [
        f"{'ok  ' if not f.problem else 'FAIL'} {f.table} {f.day} {f.file} md5 {f.md5} {f.rows} rows"
        + (f" -> {f.problem}" if f.problem else "")
        for f in chain.landing
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        lake = lake_settings(os.environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = lake.storage_options or None
    sources = Sources(
        registry=ModelRegistry(
            DeltaStore(args.lake or lake.lake_uri, options), args.artifacts or lake.artifacts_uri
        ),
        zone=LandingZone(args.landing or lake.landing_uri, lake.quarantine_uri, options),
        dvc=DvcRepo(
            args.repo.resolve(), remote=args.dvc_remote or lake.dvc_remote, endpoint_url=lake.endpoint_url
        ),
    )
    try:
        if args.request_id:
            chain, version = request_chain(sources, args.request_id)
            model_chain(sources, version, chain)
        else:
            chain = model_chain(sources, args.version)
    except (RegistryError, DvcError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(chain))
    if not chain.ok:
        print("lineage broken:\n" + "\n".join(f"- {p}" for p in chain.problems), file=sys.stderr)
        return 1
    print(f"every link checked: {len(chain.links)} links, {len(chain.landing)} landing files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
