"""PLATFORM_EXECUTOR picks per-step pods; the heavy assets carry their pod sizes as k8s tags."""

from __future__ import annotations

import json

import dagster as dg
import kubernetes_validate
import pytest
from dagster_k8s import k8s_job_executor
from dagster_k8s.job import get_user_defined_k8s_config
from kubernetes.utils import parse_quantity

from assets.step_resources import (
    EVALUATION,
    FEATURES,
    INGESTION,
    K8S_CONFIG_TAG,
    TRAINING_SET,
    StepSize,
)
from orchestration.definitions import build_definitions
from orchestration.executors import build_executor

K8S = {"PLATFORM_PROFILE": "k8s", "PLATFORM_TRAINING_IMAGE": "registry.example.com/training:1"}
SIZED = {
    "bronze/flights": INGESTION,
    "bronze/weather": INGESTION,
    "features/flight_features": FEATURES,
    "training/training_set": TRAINING_SET,
    "training/evaluation": EVALUATION,
}


def test_in_process_is_the_default_and_k8s_job_is_opt_in() -> None:
    assert build_executor({}) is dg.in_process_executor
    assert build_definitions({**K8S, "PLATFORM_EXECUTOR": "k8s_job"}).executor is k8s_job_executor
    assert build_definitions(K8S).executor is dg.in_process_executor


def test_k8s_job_needs_the_k8s_profile_and_unknown_executors_are_refused() -> None:
    with pytest.raises(ValueError, match="needs PLATFORM_PROFILE=k8s"):
        build_executor({"PLATFORM_EXECUTOR": "k8s_job"})
    with pytest.raises(ValueError, match="PLATFORM_EXECUTOR='multiprocess' is not one of"):
        build_executor({"PLATFORM_EXECUTOR": "multiprocess"})


def test_the_heavy_assets_carry_their_pod_size_and_the_light_ones_none() -> None:
    graph = build_definitions({**K8S, "PLATFORM_EXECUTOR": "k8s_job"}).resolve_asset_graph()
    sized = {}
    for key in graph.get_all_asset_keys():
        tags = graph.get(key).assets_def.op.tags
        if K8S_CONFIG_TAG in tags:
            sized[key.to_user_string()] = json.loads(tags[K8S_CONFIG_TAG])
    assert sized == {
        key: {"container_config": {"resources": size.requirements()}} for key, size in SIZED.items()
    }


def quantities(size: StepSize) -> dict[str, dict[str, float]]:
    """The requirements as numbers; raises ValueError on anything Kubernetes would not parse."""
    return {
        kind: {name: float(parse_quantity(value)) for name, value in amounts.items()}
        for kind, amounts in size.requirements().items()
    }


@pytest.mark.parametrize("size", sorted(set(SIZED.values()), key=repr), ids=repr)
def test_the_sizes_are_kubernetes_resource_requirements_dagster_k8s_accepts(size: StepSize) -> None:
    tags = {K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": size.requirements()}})}
    resources = get_user_defined_k8s_config(tags).container_config["resources"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "step"},
        "spec": {"containers": [{"name": "step", "image": "img:1", "resources": resources}]},
    }
    kubernetes_validate.validate(pod, "1.37.0", strict=True)
    numbers = quantities(size)
    for name, request in numbers["requests"].items():
        assert 0 < request <= numbers["limits"][name]


def test_a_size_that_is_no_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid number format"):
        quantities(StepSize("2", "4 GB", "4", "8Gi"))
