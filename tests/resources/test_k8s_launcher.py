"""The GPU training pod: what the Kubernetes launcher submits, validated against the Kubernetes schemas."""

from __future__ import annotations

import json

import kubernetes
import kubernetes_validate
import pytest
from dagster_k8s.pipes import build_pod_body

from ml.training.encoded import parse_budget
from orchestration.profiles import build_resources
from resources import K8sLauncher, LocalLauncher, TrainingRequest
from resources.k8s_pod import CONTAINER, pod_labels, pod_manifest, pod_spec

KUBERNETES_VERSION = "1.37.0"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
REQUEST = TrainingRequest("s3://lake/training_set", "s3://models/abc", "params.yaml")


@pytest.fixture
def launcher() -> K8sLauncher:
    return K8sLauncher(
        image="registry.example/flightdelay-training:1.0",
        namespace="ml",
        gpu_count=2,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        tolerations=[GPU_TAINT],
        service_account="flightdelay-training",
        image_pull_secrets=["registry-credentials"],
        env_from_secret="flightdelay-storage",
        labels={"team": "ml platform"},
    )


def submitted_pod(launcher: K8sLauncher, run_id: str = "8f1c2a9e-0d4b-4c2e-9f3a-1b2c3d4e5f60") -> dict:
    """The pod body PipesK8sClient builds from the launcher's spec, as JSON for the API server."""
    settings = launcher.settings()
    command = launcher.command(REQUEST)
    pod = build_pod_body(
        pod_name="dagster-8f1c2a9e-training",
        image=launcher.image,
        command=command,
        env_vars={"DAGSTER_PIPES_CONTEXT": "e30=", "DAGSTER_PIPES_MESSAGES": "e30="},
        base_pod_meta={"labels": pod_labels(settings, run_id, "training/candidate_model")},
        base_pod_spec=pod_spec(settings, command),
    )
    body = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
    return {"apiVersion": "v1", "kind": "Pod", **body}


def test_the_submitted_pod_validates_against_the_kubernetes_schemas(launcher: K8sLauncher) -> None:
    kubernetes_validate.validate(submitted_pod(launcher), KUBERNETES_VERSION, strict=True)
    manifest = pod_manifest(
        launcher.settings(), launcher.command(REQUEST), "run-1", "training/candidate_model"
    )
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_a_broken_spec_is_caught_by_the_validation(launcher: K8sLauncher) -> None:
    pod = submitted_pod(launcher)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = {"count": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_the_pod_asks_for_gpus_a_gpu_node_shm_and_runs_the_entrypoint(launcher: K8sLauncher) -> None:
    pod = submitted_pod(launcher)
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["name"] == CONTAINER
    assert container["image"] == "registry.example/flightdelay-training:1.0"
    budget = ["--memory-budget", launcher.memory_limit]
    assert container["command"] == ["python", "-m", "ml.training.train", *REQUEST.arguments(), *budget]
    assert parse_budget(launcher.memory_limit) == 2**30 * int(launcher.memory_limit.removesuffix("Gi"))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert spec["tolerations"] == [GPU_TAINT]
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 6 * 3600
    assert spec["serviceAccountName"] == "flightdelay-training"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert container["envFrom"] == [{"secretRef": {"name": "flightdelay-storage"}}]
    names = {e["name"] for e in container["env"]}
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= names


def test_the_pod_runs_as_non_root_on_a_read_only_root_and_carries_no_secret_value(
    launcher: K8sLauncher,
) -> None:
    pod = submitted_pod(launcher)
    [container] = pod["spec"]["containers"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "work", "mountPath": "/tmp"} in container["volumeMounts"]  # writable scratch
    text = json.dumps(pod)
    assert "AWS_SECRET_ACCESS_KEY" not in text and "secretKeyRef" not in text


def test_labels_tie_the_pod_to_its_run_and_are_valid_label_values(launcher: K8sLauncher) -> None:
    labels = submitted_pod(launcher, run_id="8f1c2a9e-0d4b-4c2e-9f3a-1b2c3d4e5f60")["metadata"]["labels"]
    assert labels["dagster/run-id"] == "8f1c2a9e-0d4b-4c2e-9f3a-1b2c3d4e5f60"
    assert labels["dagster/asset"] == "training.candidate_model"
    assert labels["team"] == "ml-platform"


def test_cpu_only_pods_ask_for_no_gpu() -> None:
    cpu = K8sLauncher(image="img:1", gpu_count=0)
    limits = pod_spec(cpu.settings(), ["python"])["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits


def test_the_profile_picks_the_launcher_and_the_asset_code_does_not_change() -> None:
    assert isinstance(build_resources({})["launcher"], LocalLauncher)
    k8s = build_resources(
        {
            "PLATFORM_PROFILE": "k8s",
            "PLATFORM_TRAINING_IMAGE": "img:2",
            "PLATFORM_GPU_TOLERATIONS": json.dumps([GPU_TAINT]),
            "PLATFORM_STORAGE_SECRET": "flightdelay-storage",
        }
    )["launcher"]
    assert isinstance(k8s, K8sLauncher)
    assert k8s.tolerations == [GPU_TAINT] and k8s.env_from_secret == "flightdelay-storage"
    with pytest.raises(ValueError, match="PLATFORM_TRAINING_IMAGE"):
        build_resources({"PLATFORM_PROFILE": "k8s"})
    with pytest.raises(ValueError, match="PLATFORM_GPU_TOLERATIONS is not valid JSON"):
        build_resources(
            {"PLATFORM_PROFILE": "k8s", "PLATFORM_TRAINING_IMAGE": "i", "PLATFORM_GPU_TOLERATIONS": "["}
        )
