"""Pod sizes of the heavy steps when each step runs in its own pod (`PLATFORM_EXECUTOR=k8s_job`).

The sizes travel as the `dagster-k8s/config` op tag that `k8s_job_executor` reads; the
in-process executor ignores them, so the local profile is unaffected. Requests are what a
step needs on a full year (2013) of data, limits leave it room for a bad day. The GPU pod of
training is sized by the launcher (`resources/k8s_pod.py`), not here: the training step
itself only waits for that pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

K8S_CONFIG_TAG = "dagster-k8s/config"


@dataclass(frozen=True)
class StepSize:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def requirements(self) -> dict[str, dict[str, str]]:
        """A Kubernetes ResourceRequirements object."""
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


INGESTION = StepSize(cpu_request="1", memory_request="2Gi", cpu_limit="2", memory_limit="4Gi")
FEATURES = StepSize(cpu_request="2", memory_request="4Gi", cpu_limit="4", memory_limit="8Gi")
TRAINING_SET = StepSize(cpu_request="1", memory_request="2Gi", cpu_limit="2", memory_limit="4Gi")
EVALUATION = StepSize(cpu_request="2", memory_request="4Gi", cpu_limit="4", memory_limit="8Gi")


def k8s_step_tags(size: StepSize) -> dict[str, Any]:
    """Op tags giving a step's container these requests and limits under `k8s_job_executor`."""
    return {K8S_CONFIG_TAG: {"container_config": {"resources": size.requirements()}}}
