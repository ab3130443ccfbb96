"""Promotion and rollback reach a running server without a failed request or a version out of turn."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time

from starlette.testclient import TestClient

from serving.app import create_app
from tests.conftest import ADMIN_TOKEN, Served, bearer
from tests.serving.test_api import flight

CHANGES = 10
LOAD_THREADS = 2


def register_copy(served: Served) -> int:
    """A second version with the champion's files copied to their own folder: a rollback target.

    The copy keeps the champion's probe and file md5s, so every swap below also passes the
    server's checks (md5s, probe, weights) under load.
    """
    champion = served.champion
    folder = served.platform.root / "models" / "copy-for-reload"
    if not folder.exists():
        shutil.copytree(champion.artifact_uri, folder)
    return served.platform.registry.register(
        artifact_uri=str(folder),
        onnx_uri=str(folder / "model.onnx"),
        model_md5=f"copy-{champion.model_md5}",
        training_set_md5=champion.training_set_md5,
        feature_table_uri=champion.feature_table_uri,
        feature_table_version=champion.feature_table_version,
        lake_versions=champion.lake_versions,
        git_commit=champion.git_commit,
        params=champion.params,
        metrics=champion.metrics,
        now=dt.datetime.now(dt.UTC),
        # The copy holds the champion's bytes, so its recorded md5s are the champion's: verified at load.
        lineage=champion.lineage,
    )


def test_ten_promotions_under_load_fail_no_request_and_serve_only_the_champion_of_the_time(
    served: Served,
) -> None:
    registry = served.platform.registry
    first = served.champion.version
    second = register_copy(served)
    answers: list[tuple[float, float, int, set[int]]] = []
    failures: list[str] = []
    stop = threading.Event()

    with TestClient(create_app(served.config(poll_seconds=0.1))) as client:

        def load() -> None:
            body = {"flights": [flight()] * 20}
            while not stop.is_set():
                started = time.monotonic()
                answer = client.post("/v1/predict", json=body, headers=bearer())
                ended = time.monotonic()
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                    continue
                answers.append((started, ended, *_versions(answer.json())))

        # Per change (began, confirmed, version): the server may serve `version` from `began` (the
        # registry changed, and the poll may get there before the admin reload answers) and
        # serves it from `confirmed` until the next change is confirmed. The first champion is
        # live from before the first request.
        now = time.monotonic()
        live = [(now, now, first)]
        threads = [threading.Thread(target=load) for _ in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        try:
            for change in range(CHANGES):
                target = second if change % 2 == 0 else first
                began = time.monotonic()
                if change % 4 < 2:
                    registry.promote(target, f"reload test change {change}", now=dt.datetime.now(dt.UTC))
                else:
                    registry.rollback(target, f"reload test rollback {change}", now=dt.datetime.now(dt.UTC))
                if change % 2 == 0:
                    reload = client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN))
                    # "unchanged" when the poll got there first; either way the target serves now.
                    assert reload.json()["outcome"] in {"swapped", "unchanged"}
                    assert reload.json()["model_version"] == target
                else:
                    _wait_for(client, target)  # the poll of the registry picks it up
                live.append((began, time.monotonic(), target))
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            registry.promote(first, "reload test done", now=dt.datetime.now(dt.UTC))

    assert failures == []
    assert len(answers) > 4 * CHANGES
    for started, ended, version, seen in answers:
        assert seen == {version}, "one request was answered by two models"
        # A version whose time on the server overlaps the request.
        allowed = {
            v
            for i, (began, _, v) in enumerate(live)
            if began <= ended and (i + 1 == len(live) or live[i + 1][1] >= started)
        }
        assert version in allowed, (started, ended, version, live)
    assert {v for _, _, v, _ in answers} == {first, second}


def _versions(body: dict) -> tuple[int, set[int]]:
    return body["model_version"], {p["model_version"] for p in body["predictions"]}


def _wait_for(client: TestClient, version: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").json().get("model_version") == version:
            return
        time.sleep(0.02)
    raise AssertionError(f"the server did not load v{version} within {timeout} s")
