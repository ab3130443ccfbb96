"""The `k8s` profile's GPU settings reach the pod whichever way training is launched.

Run requests have lost their configuration on some launch paths (dagster-io/dagster#26720,
#22865), so the pod spec is checked where it lands, at a fake Kubernetes API server, for
training launched from the retraining sensor under the daemon, through the webserver's
GraphQL API (what the UI's Materialize button calls), as a backfill run by the daemon, and
from the retraining schedule's tick (its cron set to every minute through
PLATFORM_RETRAIN_CRON). The profile is picked by environment variables only, as in a
deployment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from devtools.graphql_queries import LAUNCH_BACKFILL, LAUNCH_RUN
from devtools.processes import START_TIMEOUT
from devtools.services import DagsterServices, dagster_services, selector
from tests.conftest import PROJECT, SMALL_PLATFORM, TrainingPlatform, day, make_dvc_repo, set_training
from tests.fakes.fake_kube_api import FakeKubeApi

pytestmark = pytest.mark.slow

NAMESPACE = "ml-training"
SECRET = "flightdelay-storage"
IMAGE = "registry.example/flightdelay-training:1.4.2"
NODE_SELECTOR = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
TRAINING = [["training", "training_set"], ["training", "candidate_model"]]


def k8s_profile(kubeconfig: Path, repo: Path) -> dict[str, str]:
    return {
        "PLATFORM_PROFILE": "k8s",
        "PLATFORM_TRAINING_IMAGE": IMAGE,
        "PLATFORM_K8S_NAMESPACE": NAMESPACE,
        "PLATFORM_GPU_COUNT": "2",
        "PLATFORM_GPU_NODE_SELECTOR": json.dumps(NODE_SELECTOR),
        "PLATFORM_GPU_TOLERATIONS": json.dumps(TOLERATIONS),
        "PLATFORM_STORAGE_SECRET": SECRET,
        "PLATFORM_KUBECONFIG": str(kubeconfig),
        "PLATFORM_K8S_POLL_INTERVAL": "0.5",
        # The fake schedules and starts a pod at once; a busy machine may still take a while.
        "PLATFORM_K8S_STARTUP_TIMEOUT": "180",
        "PLATFORM_REPO_ROOT": str(repo),
        "PLATFORM_RETRAIN_CRON": "* * * * *",
    }


def materialize_through_graphql(services: DagsterServices) -> str:
    """What the UI's Materialize button sends: the asset job with an asset selection."""
    params = {
        "selector": selector(jobName="__ASSET_JOB", assetSelection=[{"path": path} for path in TRAINING]),
        "executionMetadata": {"tags": []},
        "runConfigData": {},
    }
    data = services.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return str(data["run"]["runId"])


def backfill_through_graphql(services: DagsterServices) -> str:
    """A backfill of the (unpartitioned) training assets, as the UI's backfill dialog launches it."""
    params = {
        "partitionsByAssets": [{"assetKey": {"path": path}, "partitions": None} for path in TRAINING],
        "title": "k8s profile",
    }
    data = services.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    backfill = str(data["backfillId"])
    status = services.wait_for_backfill(backfill)
    runs = [
        r["runId"]
        for r in services.runs()
        if any(t["key"] == "dagster/backfill" and t["value"] == backfill for t in r["tags"])
    ]
    assert runs, f"backfill {backfill} ended {status} without a run"
    return str(runs[0])


def wait_for_tagged_run(
    services: DagsterServices, key: str, value: str, timeout: float = START_TIMEOUT
) -> str:
    """The first run the daemon launched for a sensor or schedule (`dagster/sensor_name`, ...)."""
    tagged = services.poll(
        lambda: [
            r for r in services.runs() if any(t["key"] == key and t["value"] == value for t in r["tags"])
        ],
        what=f"a run tagged {key}={value}",
        timeout=timeout,
        interval=1,
    )
    return str(tagged[0]["runId"])


def pod_of_run(fake: FakeKubeApi, run_id: str) -> dict[str, Any]:
    pods = [b for b in fake.received if b["metadata"]["labels"].get("dagster/run-id") == run_id]
    assert len(pods) == 1, f"run {run_id}: {len(pods)} pods among {len(fake.received)}"
    return pods[0]


def assert_gpu_pod(pod: dict[str, Any], path: str) -> None:
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == IMAGE, path
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2", path
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2", path
    assert spec["nodeSelector"] == NODE_SELECTOR, path
    assert spec["tolerations"] == TOLERATIONS, path
    assert any(v["name"] == "dshm" and v["emptyDir"]["medium"] == "Memory" for v in spec["volumes"]), path
    assert container["envFrom"] == [{"secretRef": {"name": SECRET}}], path


def assert_trained(services: DagsterServices, run_id: str, path: str) -> None:
    stats = services.wait_for_run(run_id)
    steps = {s["stepKey"]: s["status"] for s in stats["stepStats"]}
    assert steps.get("training__candidate_model") == "SUCCESS", f"{path}: {stats} (see {services.logs})"


@pytest.mark.timeout(600)
def test_the_gpu_settings_reach_the_pod_from_the_sensor_the_ui_a_backfill_and_a_schedule(
    tmp_path: Path, replayed_landing: Path
) -> None:
    data = TrainingPlatform(tmp_path / "data")
    shutil.copytree(replayed_landing, data.landing_dir)
    make_dvc_repo(data.root, SMALL_PLATFORM)
    set_training(data, {"max_epochs": 2, "patience": 1})
    data.reference()
    data.bronze(day(1), day(14))
    data.features(day(1), day(14))

    with FakeKubeApi(workdir=PROJECT) as fake:
        fake.add_secret(NAMESPACE, SECRET, {"AWS_REGION": "eu-west-1"})
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        with dagster_services(tmp_path, k8s_profile(kubeconfig, data.repo)) as services:
            services.start_sensor("retrain_sensor")
            sensor_run = wait_for_tagged_run(services, "dagster/sensor_name", "retrain_sensor")
            assert_trained(services, sensor_run, "sensor")
            ui_run = materialize_through_graphql(services)
            assert_trained(services, ui_run, "GraphQL")
            backfill_run = backfill_through_graphql(services)
            assert_trained(services, backfill_run, "backfill")
            services.start_schedule("weekly_retraining")
            schedule_run = wait_for_tagged_run(services, "dagster/schedule_name", "weekly_retraining")
            assert_trained(services, schedule_run, "schedule")

        assert_gpu_pod(pod_of_run(fake, sensor_run), "sensor run request")
        assert_gpu_pod(pod_of_run(fake, ui_run), "GraphQL materialization")
        assert_gpu_pod(pod_of_run(fake, backfill_run), "backfill")
        assert_gpu_pod(pod_of_run(fake, schedule_run), "schedule tick")
        assert fake.pods == {}, "a pod was left behind"
