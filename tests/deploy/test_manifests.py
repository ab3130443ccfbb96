"""deploy/k8s/: valid Kubernetes objects, one namespace, least-privilege RBAC, no secret in deploy/."""

from __future__ import annotations

import re
from pathlib import Path

import dagster_k8s
import kubernetes_validate
import pytest
import yaml

from tests.deploy.deploy_files import (
    DEPLOY,
    KUBERNETES_VERSION,
    NAMESPACE,
    REPO,
    by_kind,
    manifests,
    secret_literals,
)

CLUSTER_WIDE = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
API_CALL = re.compile(r"\.(create|read|list|delete|patch|replace)_namespaced_(\w+?)(?:_with_retries)?\(")
# The kubernetes client's method suffix -> (API group, resource).
RESOURCES = {
    "pod": ("", "pods"),
    "pod_log": ("", "pods/log"),
    "event": ("", "events"),
    "job": ("batch", "jobs"),
    "job_status": ("batch", "jobs/status"),
}
VERBS = {
    "create": "create",
    "read": "get",
    "list": "list",
    "delete": "delete",
    "patch": "patch",
    "replace": "update",
}
# The modules the platform uses: PipesK8sClient, K8sRunLauncher, k8s_job_executor and their client.
USED_MODULES = ("pipes.py", "launcher.py", "executor.py", "client.py")


def granted(role: dict) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def api_calls(sources: list[Path]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every namespaced Kubernetes API call in these files."""
    calls = set()
    for source in sources:
        for verb, suffix in API_CALL.findall(source.read_text()):
            group, resource = RESOURCES[suffix]
            calls.add((group, resource, VERBS[verb]))
    return calls


def platform_calls() -> set[tuple[str, str, str]]:
    """What the run pods call: the dagster_k8s modules we use and our own launcher code."""
    package = Path(dagster_k8s.__file__).parent
    return api_calls(
        [package / module for module in USED_MODULES] + sorted((REPO / "resources").glob("*.py"))
    )


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    objects = manifests()
    assert {obj["kind"] for obj in objects} == {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validation_rejects_a_broken_manifest() -> None:
    [role] = by_kind("Role")
    role["rules"][0]["verbs"] = "create"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, KUBERNETES_VERSION, strict=True)


def test_everything_but_the_namespace_lives_in_the_one_namespace_and_nothing_is_cluster_wide() -> None:
    objects = manifests()
    assert [obj["metadata"]["name"] for obj in objects if obj["kind"] in CLUSTER_WIDE] == [NAMESPACE]
    assert {obj["metadata"]["namespace"] for obj in objects if obj["kind"] != "Namespace"} == {NAMESPACE}
    [binding] = by_kind("RoleBinding")
    assert binding["roleRef"]["kind"] == "Role"
    assert all(subject["namespace"] == NAMESPACE for subject in binding["subjects"])


def test_the_role_grants_exactly_what_dagster_k8s_calls() -> None:
    [role] = by_kind("Role")
    assert granted(role) == {
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
        ("", "events", "list"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("batch", "jobs", "list"),
        ("batch", "jobs/status", "get"),
    }
    # Derived from the code: a call added by a dagster-k8s release or by us fails here first.
    assert granted(role) == platform_calls()
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])


def test_only_the_dagster_account_is_bound_and_the_training_and_serving_pods_get_no_token() -> None:
    [binding] = by_kind("RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "flightdelay-dagster", "namespace": NAMESPACE}
    ]
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind("ServiceAccount")}
    assert set(accounts) == {"flightdelay-dagster", "flightdelay-training", "flightdelay-serving"}
    assert accounts["flightdelay-training"]["automountServiceAccountToken"] is False
    assert accounts["flightdelay-serving"]["automountServiceAccountToken"] is False


def test_the_work_volume_is_shared_between_the_run_and_training_pods() -> None:
    [claim] = by_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_no_file_in_deploy_holds_a_secret_value() -> None:
    assert secret_literals(DEPLOY) == []


def test_the_secret_scan_finds_planted_secrets(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(
        "postgresql:\n  postgresqlPassword: hunter2\n  password:\n    env: X\n"
        "env:\n  - {name: PLATFORM_SERVING_TOKEN, value: hunter2}\n"
        "  - {name: PLATFORM_SERVING_ADMIN_TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}\n"
    )
    (tmp_path / "Dockerfile").write_text("FROM python\nENV AWS_SECRET_ACCESS_KEY=abc\n")
    (tmp_path / "README.md").write_text(
        "kubectl create secret generic s --from-literal=postgresql-password=hunter2\n"
        'kubectl create secret generic s --from-literal=postgresql-password="$PG_PASSWORD"\n'
        "key AKIAABCDEFGHIJKLMNOP\n"
    )
    found = secret_literals(tmp_path)
    assert "values.yaml: postgresql.postgresqlPassword" in found
    assert "values.yaml: env[0].value (PLATFORM_SERVING_TOKEN)" in found
    assert "Dockerfile: ENV/ARG AWS_SECRET_ACCESS_KEY" in found
    assert "README.md: --from-literal=postgresql-password=<a literal>" in found
    assert any(item.startswith("README.md: AKIA") for item in found)
    assert len(found) == 5


def test_the_one_off_jobs_validate_and_run_as_non_root_on_a_read_only_root() -> None:
    jobs = [
        doc
        for path in sorted((DEPLOY / "jobs").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]
    assert [job["metadata"]["name"] for job in jobs] == ["flightdelay-prepare-work-volume"]
    for job in jobs:
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
        spec = job["spec"]["template"]["spec"]
        assert job["metadata"]["namespace"] == NAMESPACE
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
        [claim] = by_kind("PersistentVolumeClaim")
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        ]
        assert claims == [claim["metadata"]["name"]]
