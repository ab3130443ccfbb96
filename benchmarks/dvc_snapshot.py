"""DVC on the training-set snapshot: `dvc add` and `dvc status` ÷ an md5 of the same bytes.

    python -m benchmarks.dvc_snapshot [--quick]

The snapshot is the real one (2013 replayed, bronze and features materialized by the
assets, split with the default sizes; --quick: the first quarter), in a fresh git + DVC
repository. Timed, each in a fresh copy of the snapshot so DVC's hash cache is cold:

- md5 (baseline): hashlib.md5 over every file's bytes, in this process;
- `dvc add` of the folder (hash, cache, write the .dvc file);
- `dvc status` right after (nothing changed: answered from DVC's state database);
- `dvc --version`: the fixed cost of starting DVC, so the ratios can be read net of it.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import Report, arguments, ratio
from benchmarks.training_throughput import build_training_set
from ml.registry.dvc_repo import DvcRepo

REPEATS = 5


def md5_of_files(folder: Path) -> str:
    digest = hashlib.md5()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(hashlib.md5(path.read_bytes()).digest())
    return digest.hexdigest()


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh_repo(parent: Path, name: str) -> DvcRepo:
    root = parent / name
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    repo = DvcRepo(root)
    repo.run("init", "-q")
    return repo


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    report = Report("dvc_snapshot", args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-dvc-") as tmp:
        work = Path(tmp)
        snapshot = build_training_set(work, args.quick)
        size = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
        files = sum(1 for p in snapshot.rglob("*") if p.is_file())
        times: dict[str, list[float]] = {"md5": [], "add": [], "status": [], "start": []}
        for i in range(REPEATS):
            repo = fresh_repo(work, f"repo{i}")
            shutil.copytree(snapshot, repo.root / "training_set")
            times["md5"].append(timed(lambda: md5_of_files(repo.root / "training_set")))  # noqa: B023
            times["start"].append(timed(lambda: repo.run("--version")))  # noqa: B023
            times["add"].append(timed(lambda: repo.run("add", "--quiet", "training_set")))  # noqa: B023
            times["status"].append(timed(lambda: repo.run("status", "--quiet")))  # noqa: B023
    med = {k: statistics.median(v) for k, v in times.items()}
    report.table(
        f"Snapshot of {files} file(s), {size / 1e6:.1f} MB; median of {REPEATS}",
        [
            {
                "what": "md5 of every file (baseline)",
                "median": f"{med['md5'] * 1e3:.1f} ms",
                "÷ md5": "1.00x",
            },
            {
                "what": "dvc --version (start-up)",
                "median": f"{med['start']:.2f} s",
                "÷ md5": ratio(med["start"] / med["md5"]),
            },
            {"what": "dvc add", "median": f"{med['add']:.2f} s", "÷ md5": ratio(med["add"] / med["md5"])},
            {
                "what": "dvc status",
                "median": f"{med['status']:.2f} s",
                "÷ md5": ratio(med["status"] / med["md5"]),
            },
            {
                "what": "dvc add net of start-up",
                "median": f"{med['add'] - med['start']:.2f} s",
                "÷ md5": ratio((med["add"] - med["start"]) / med["md5"]),
            },
        ],
    )
    report.headline("dvc add ÷ md5 of the snapshot's bytes", med["add"] / med["md5"], None)
    report.headline("dvc status ÷ md5 of the snapshot's bytes", med["status"] / med["md5"], None)
    return report.finish(args.json)


if __name__ == "__main__":
    main()
