"""Serving latency: HTTP p50 and p99 of one flight ÷ onnxruntime alone on the same model and input.

    python -m benchmarks.serving_latency [--quick]

The server is the real one (`python -m serving`, uvicorn, on 127.0.0.1) over a lake
built for the run (`benchmarks.serving_setup`). One client sends one-flight predict
requests one after another on a kept-alive connection (`http.client`), after a warm-up;
each is timed from send to the last byte of the answer. The baseline, in this process
and the same run: `InferenceSession.run` of the same model file on the same encoded row
the server builds for that flight. Between the two, the server's own work without HTTP
(validation, the online lookup, encoding, the graph) shows where the time goes. After
the server's graceful stop, its prediction log must hold every answer once.
Then the same requests with the second registered version in shadow: the request path only
queues it, so p50 may grow by at most 5%, and the log must hold two rows per answer (the
champion's and the shadow's). Targets (2 cores): p50 at most 1 ms and p99 at most 3 ms over
HTTP, with the log on.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.common import Report, arguments, ratio
from benchmarks.serving_load import logged_rows
from benchmarks.serving_setup import build_platform, post, server
from ml.online.features import OnlineLookup, servable_range
from ml.online.snapshot import current_id, load
from ml.training.onnx_model import OnnxModel
from serving.config import DEFAULT_MAX_DAYS_AHEAD
from serving.model_store import SCORING_THREADS
from serving.schemas import outside_range, parse, schedules

P50_TARGET_MS = 1.0
P99_TARGET_MS = 3.0
MAX_BATCH = 1000


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def row(what: str, times: Sequence[float], baseline: float) -> dict[str, object]:
    return {
        "what": what,
        "requests": len(times),
        "p50": f"{percentile(times, 50) * 1e3:.3f} ms",
        "p90": f"{percentile(times, 90) * 1e3:.3f} ms",
        "p99": f"{percentile(times, 99) * 1e3:.3f} ms",
        "max": f"{max(times) * 1e3:.2f} ms",
        "p50 ÷ onnxruntime p50": ratio(percentile(times, 50) / baseline),
    }


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    report = Report("serving_latency", args.quick)
    requests, warmup = (300, 100) if args.quick else (2_000, 300)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        platform = build_platform(root / "platform", days=14)
        report.note(
            f"setup (replay, ingest, features, snapshot, training) took {time.perf_counter() - started:.1f} s"
        )
        body = platform.body(1)

        # In this process: the model and snapshot the server loads, with its settings.
        champion = platform.registry.get(platform.champion)
        model = OnnxModel(champion.artifact_uri, threads=SCORING_THREADS)
        snapshot = load(platform.lake_uri, current_id(platform.lake_uri) or "")
        lookup = OnlineLookup(snapshot)
        flights = schedules(parse(body, MAX_BATCH))
        categorical, numeric = model.preprocessor.transform_columns(lookup.columns(flights))
        feeds = {"categorical": categorical, "numeric": numeric}
        first, last = servable_range(snapshot, DEFAULT_MAX_DAYS_AHEAD)

        def full_path() -> np.ndarray:
            parsed = schedules(parse(body, MAX_BATCH))
            if outside_range(parsed, first, last):
                raise RuntimeError("the benchmark's flight is outside the served days")
            return model.predict_columns(lookup.columns(parsed))

        in_process = full_path()

        with server(platform, root / "server.log") as running:
            connection = running.connection()
            answers: list[float] = []

            def one() -> None:
                status, answer = post(connection, "/v1/predict", body)
                if status != 200:
                    raise RuntimeError(f"predict answered {status}: {answer[:300]!r}")
                answers.append(json.loads(answer)["predictions"][0]["delay_probability"])

            http_times = timed(one, requests, warmup)
            connection.close()
        logged = logged_rows(platform)  # after the server's graceful stop: every answer committed

        # The same, with a challenger in shadow: scored off the request path for every request.
        registry = platform.registry
        other = registry.get(platform.other)
        registry.update_metrics(
            other.version, {**other.metrics, "gate": {"passed": True, "note": "benchmark"}}
        )
        registry.start_shadow(
            other.version, "serving benchmark: shadow overhead", now=dt.datetime.now(dt.UTC)
        )
        answers_before = len(answers)
        with server(platform, root / "server-shadow.log") as running:
            connection = running.connection()
            shadow_times = timed(one, requests, warmup)
            connection.close()
        logged_with_shadow = logged_rows(platform) - logged
        # Baselines after the server stopped, so they have the cores to themselves as it had.
        onnx_times = timed(lambda: model.session.run(["probability"], feeds), requests, warmup)
        full_times = timed(full_path, requests, warmup)
        parse_times = timed(lambda: schedules(parse(body, MAX_BATCH)), requests, warmup)
        lookup_times = timed(lambda: lookup.columns(flights), requests, warmup)
        encode_times = timed(
            lambda: model.preprocessor.transform_columns(lookup.columns(flights)), requests, warmup
        )

    if len(set(answers)) != 1 or abs(answers[0] - float(in_process[0])) > 1e-6:
        raise RuntimeError(f"the server answered {set(answers)}, this process {in_process[0]}")
    baseline = percentile(onnx_times, 50)
    report.table(
        f"One flight per request, {requests} sequential requests after {warmup} warm-up",
        [
            row("HTTP: POST /v1/predict on a kept-alive connection", http_times, baseline),
            row("HTTP: the same with a challenger in shadow", shadow_times, baseline),
            row("in process: validation + lookup + encoding + onnxruntime", full_times, baseline),
            row("in process: validation (pydantic) + schedules", parse_times, baseline),
            row("in process: online lookup (feature row)", lookup_times, baseline),
            row("in process: lookup + encoding (model inputs)", encode_times, baseline),
            row("in process: onnxruntime session.run (baseline)", onnx_times, baseline),
        ],
    )
    p50, p99 = percentile(http_times, 50), percentile(http_times, 99)
    report.headline(
        "HTTP p50 ÷ onnxruntime p50, one flight",
        p50 / baseline,
        None,
        f"{p50 * 1e3:.3f} ms ÷ {baseline * 1e3:.3f} ms",
    )
    report.headline(
        "HTTP p99 ÷ onnxruntime p50, one flight",
        p99 / baseline,
        None,
        f"{p99 * 1e3:.3f} ms ÷ {baseline * 1e3:.3f} ms",
    )
    report.headline(
        f"HTTP p50 ÷ {P50_TARGET_MS} ms target", p50 * 1e3 / P50_TARGET_MS, 1.0, f"{p50 * 1e3:.3f} ms"
    )
    report.headline(
        f"HTTP p99 ÷ {P99_TARGET_MS} ms target", p99 * 1e3 / P99_TARGET_MS, 1.0, f"{p99 * 1e3:.3f} ms"
    )
    report.headline(
        "answers not in the prediction log after shutdown (or logged twice)",
        float(abs(answers_before - logged)),
        0.0,
        f"{answers_before:,} answers, {logged:,} rows logged",
    )
    shadowed = len(answers) - answers_before
    shadow_p50 = percentile(shadow_times, 50)
    report.headline(
        "HTTP p50 with a shadow ÷ without (target ≤ 1.05)",
        shadow_p50 / p50,
        1.05,
        f"{shadow_p50 * 1e3:.3f} ms ÷ {p50 * 1e3:.3f} ms",
    )
    report.headline(
        "rows missing with a shadow (champion + shadow = 2 per answer)",
        float(abs(2 * shadowed - logged_with_shadow)),
        0.0,
        f"{shadowed:,} answers, {logged_with_shadow:,} rows logged",
    )
    report.note(
        f"HTTP mean {statistics.mean(http_times) * 1e3:.3f} ms; every answer equals the in-process "
        f"probability {float(in_process[0]):.6f}"
    )
    return report.finish(args.json)


if __name__ == "__main__":
    main()
