"""The training pod: a Kubernetes pod spec for the training entrypoint on a GPU node.

Plain dictionaries in the shape of the Kubernetes API (no client import), so the spec can
be validated against the Kubernetes schemas and inspected in tests. `dagster_k8s`'s
PipesK8sClient merges it with the container it adds (image, command, Pipes environment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTAINER = "training"
SHM_VOLUME = "dshm"
WORK_VOLUME = "work"
SHARED_VOLUME = "shared"


@dataclass(frozen=True)
class PodSettings:
    image: str
    namespace: str = "dagster"
    gpu_count: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "16Gi"
    memory_limit: str = "32Gi"
    shm_size: str = "8Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, str]] = ()
    service_account: str = ""
    image_pull_secrets: Sequence[str] = ()
    env_from_secret: str = ""
    active_deadline_seconds: int = 6 * 3600
    labels: Mapping[str, str] = field(default_factory=dict)
    shared_claim: str = ""
    shared_mount_path: str = "/srv/flightdelay"


def _label_value(value: str) -> str:
    """Kubernetes label values: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)[:63]
    return cleaned.strip("._-") or "none"


def pod_labels(settings: PodSettings, run_id: str, asset: str) -> dict[str, str]:
    """Labels that tie the pod to its Dagster run, so `kubectl get pods -l` finds it."""
    return {
        **{k: _label_value(v) for k, v in settings.labels.items()},
        "app.kubernetes.io/name": "flightdelay-training",
        "app.kubernetes.io/part-of": "flightdelay-platform",
        "dagster/run-id": _label_value(run_id),
        "dagster/asset": _label_value(asset.replace("/", ".")),
    }


def training_container(settings: PodSettings, command: Sequence[str]) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
        "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    }
    if settings.gpu_count > 0:
        resources["requests"][settings.gpu_resource] = str(settings.gpu_count)
        resources["limits"][settings.gpu_resource] = str(settings.gpu_count)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "command": list(command),
        "resources": resources,
        "volumeMounts": [
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
            {"name": WORK_VOLUME, "mountPath": "/tmp"},
            *(
                [{"name": SHARED_VOLUME, "mountPath": settings.shared_mount_path}]
                if settings.shared_claim
                else []
            ),
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if settings.env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.env_from_secret}}]
    return container


def pod_spec(settings: PodSettings, command: Sequence[str]) -> dict[str, Any]:
    """The pod's spec: GPU limits, node selector, tolerations, a memory-backed /dev/shm, a deadline."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": settings.active_deadline_seconds,
        "containers": [training_container(settings, command)],
        "volumes": [
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
            {"name": WORK_VOLUME, "emptyDir": {}},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if settings.shared_claim:
        # The run's own pod mounts the same claim at the same path, so the training set and
        # the output folder the asset names are the same paths inside the training pod.
        spec["volumes"].append(
            {"name": SHARED_VOLUME, "persistentVolumeClaim": {"claimName": settings.shared_claim}}
        )
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return spec


def pod_manifest(settings: PodSettings, command: Sequence[str], run_id: str, asset: str) -> dict[str, Any]:
    """A whole Pod object, as the API server would receive it (for validation and review)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "flightdelay-training-",
            "namespace": settings.namespace,
            "labels": pod_labels(settings, run_id, asset),
        },
        "spec": pod_spec(settings, command),
    }
