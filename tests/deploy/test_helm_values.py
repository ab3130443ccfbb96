"""deploy/helm/values.yaml: keys the Dagster chart knows, valid pods, and the settings the platform reads."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from orchestration.definitions import build_definitions
from orchestration.profiles import build_resources
from resources import K8sLauncher, TrainingRequest
from resources.k8s_pod import pod_manifest
from tests.deploy.deploy_files import (
    DEPLOY,
    K8S_INSTANCE,
    KUBERNETES_VERSION,
    NAMESPACE,
    REPO,
    by_kind,
    code_location,
    values,
)

# Key paths of the official chart's values, as read in its source for chart 1.13
# (dagster-io/dagster, helm/dagster/schema/schema/charts/dagster/values.py and subschema/
# {global_,service_account,postgresql,webserver,daemon,run_launcher,compute_log_manager}.py,
# charts/dagster_user_deployments/{values.py,subschema/user_deployments.py}; `rbacEnabled` from
# templates/role.yaml). `[]` is any list item. A path in FREE_FORM holds a Kubernetes object or a
# map the chart passes through, so nothing under it is checked here (the pod tests below are).
IMAGE = ("image.repository", "image.tag", "image.pullPolicy")
POD = ("podSecurityContext", "securityContext", "resources", "volumes", "volumeMounts")
CHART_KEYS = {
    "global.postgresqlSecretName",
    "global.serviceAccountName",
    "rbacEnabled",
    "serviceAccount.create",
    "serviceAccount.name",
    "generatePostgresqlPasswordSecret",
    "postgresql.enabled",
    "postgresql.postgresqlHost",
    "postgresql.postgresqlUsername",
    "postgresql.postgresqlDatabase",
    "postgresql.postgresqlParams",
    "postgresql.postgresqlScheme",
    "postgresql.service.port",
    "telemetry.enabled",
    "computeLogManager.type",
    *(f"dagsterWebserver.{key}" for key in (*IMAGE, *POD, "service.port", "readinessProbe")),
    *(f"dagsterDaemon.{key}" for key in (*IMAGE, *POD)),
    "dagsterDaemon.runCoordinator.enabled",
    "dagsterDaemon.runCoordinator.type",
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.maxConcurrentRuns",
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].key",
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].value",
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].limit",
    "dagsterDaemon.runMonitoring.enabled",
    "dagsterDaemon.runRetries.enabled",
    "additionalInstanceConfig",
    "runLauncher.type",
    *(
        f"runLauncher.config.k8sRunLauncher.{key}"
        for key in (
            "imagePullPolicy",
            "loadInclusterConfig",
            "envConfigMaps",
            "envSecrets[].name",
            "envVars",
            "failPodOnRunFailure",
            "labels",
            "resources",
            "securityContext",
            "volumes",
            "volumeMounts",
            "runK8sConfig.podSpecConfig",
        )
    ),
    "dagster-user-deployments.enabled",
    "dagster-user-deployments.enableSubchart",
    "dagster-user-deployments.serviceAccount.create",
    "dagster-user-deployments.serviceAccount.name",
    *(
        f"dagster-user-deployments.deployments[].{key}"
        for key in (
            *IMAGE,
            *POD,
            "name",
            "codeServerArgs",
            "port",
            "includeConfigInLaunchedRuns.enabled",
            "env",
            "envSecrets[].name",
        )
    ),
}
FREE_FORM = {
    "postgresql.postgresqlParams",
    "additionalInstanceConfig",
    "dagsterWebserver.readinessProbe",
    "runLauncher.config.k8sRunLauncher.labels",
    "runLauncher.config.k8sRunLauncher.runK8sConfig.podSpecConfig",
    "dagster-user-deployments.deployments[].env",
    *(f"{parent}.{key}" for parent in ("dagsterWebserver", "dagsterDaemon") for key in POD),
    *(f"runLauncher.config.k8sRunLauncher.{key}" for key in POD if key != "podSecurityContext"),
    *(f"dagster-user-deployments.deployments[].{key}" for key in POD),
}


def key_paths(node: Any, path: str = "") -> Iterator[str]:
    if path in FREE_FORM:
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from key_paths(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list) and node and isinstance(node[0], dict):
        for item in node:
            yield from key_paths(item, f"{path}[]")
    else:
        yield path


def env() -> dict[str, str]:
    return dict(code_location()["env"])


def pod(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The pod a chart component gets from its values (the parts these values set)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "securityContext": settings["podSecurityContext"],
            "volumes": settings["volumes"],
            "containers": [
                {
                    "name": name,
                    "image": f"{settings['image']['repository']}:{settings['image']['tag']}",
                    "securityContext": settings["securityContext"],
                    "resources": settings["resources"],
                    "volumeMounts": settings["volumeMounts"],
                }
            ],
        },
    }


def run_job(step_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """The Job K8sRunLauncher (or k8s_job_executor, given a step's tags) builds from these values.

    The same path as the launcher: its settings become a K8sContainerContext, merged with the
    run's k8s config and the step's `dagster-k8s/config` tag, then `construct_dagster_k8s_job`.
    """
    launcher = values()["runLauncher"]["config"]["k8sRunLauncher"]
    context = K8sContainerContext(
        image_pull_policy=launcher["imagePullPolicy"],
        service_account_name=values()["global"]["serviceAccountName"],
        env_secrets=[s["name"] for s in launcher["envSecrets"]],
        volumes=launcher["volumes"],
        volume_mounts=launcher["volumeMounts"],
        labels=launcher["labels"],
        resources=launcher["resources"],
        security_context=launcher["securityContext"],
        run_k8s_config=UserDefinedDagsterK8sConfig(pod_spec_config=launcher["runK8sConfig"]["podSpecConfig"]),
    )
    if step_tags is not None:
        context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    config = DagsterK8sJobConfig(
        job_image=f"{code_location()['image']['repository']}:{code_location()['image']['tag']}",
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="flightdelay-dagster-instance",
        postgres_password_secret=values()["global"]["postgresqlSecretName"],
    )
    job = construct_dagster_k8s_job(
        job_config=config,
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-8f1c2a9e",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    body = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    return {"apiVersion": "batch/v1", "kind": "Job", **body}


def test_every_key_is_one_the_chart_defines() -> None:
    unknown = sorted(set(key_paths(values())) - CHART_KEYS)
    assert unknown == []


def test_the_key_check_catches_a_misspelt_key() -> None:
    misspelt = values()
    misspelt["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "x"}]
    misspelt["dagsterWebserver"]["podSecurityContext"]["anything"] = 1  # free-form: left to the pod test
    assert sorted(set(key_paths(misspelt)) - CHART_KEYS) == [
        "runLauncher.config.k8sRunLauncher.envSecret[].name"
    ]


@pytest.mark.parametrize("component", ["dagsterWebserver", "dagsterDaemon", "code-location"])
def test_the_chart_pods_validate_and_run_as_non_root_on_a_read_only_root(component: str) -> None:
    settings = code_location() if component == "code-location" else values()[component]
    manifest = pod(component.lower(), settings)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    spec = manifest["spec"]
    [container] = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_run_pod_built_by_the_launcher_validates_and_mounts_the_work_volume() -> None:
    job = run_job()
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    spec = job["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert spec["serviceAccountName"] == "flightdelay-dagster"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [claim] = by_kind("PersistentVolumeClaim")
    work = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    assert work["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env()["PLATFORM_REPO_ROOT"].startswith(mounts[work["name"]] + "/")
    assert {"secretRef": {"name": "flightdelay-storage"}} in container["envFrom"]


def test_a_step_pod_takes_its_size_from_the_asset_tags() -> None:
    defs = build_definitions({**env(), "PLATFORM_EXECUTOR": "k8s_job"})
    features = defs.resolve_assets_def(dg.AssetKey(["features", "flight_features"]))
    job = run_job({k: str(v) for k, v in features.op.tags.items()})
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_secrets_come_from_kubernetes_secrets_only() -> None:
    v = values()
    assert v["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in v["postgresql"]
    assert v["global"]["postgresqlSecretName"] == "flightdelay-postgresql"
    launcher_secrets = [s["name"] for s in v["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]]
    assert launcher_secrets == [s["name"] for s in code_location()["envSecrets"]] == ["flightdelay-storage"]
    assert not any(name.startswith("AWS_SECRET") or name.endswith("PASSWORD") for name in env())


def test_every_platform_variable_is_one_the_code_reads() -> None:
    source = "".join(
        p.read_text()
        for folder in ("orchestration", "resources", "ml")
        for p in (REPO / folder).rglob("*.py")
    )
    unread = [name for name in env() if name.startswith("PLATFORM_") and f'"{name}"' not in source]
    assert unread == []


def test_the_code_location_settings_build_the_k8s_launcher_the_manifests_allow() -> None:
    launcher = build_resources(env())["launcher"]
    assert isinstance(launcher, K8sLauncher)
    assert launcher.namespace == NAMESPACE
    assert launcher.env_from_secret == "flightdelay-storage"
    assert launcher.gpu_count == 1 and launcher.tolerations[0]["key"] == "nvidia.com/gpu"
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind("ServiceAccount")}
    assert accounts[launcher.service_account]["automountServiceAccountToken"] is False
    [binding] = by_kind("RoleBinding")
    assert [s["name"] for s in binding["subjects"]] == [values()["global"]["serviceAccountName"]]
    assert values()["serviceAccount"] == {"create": False, "name": values()["global"]["serviceAccountName"]}


def test_the_training_pod_sees_the_run_pods_work_volume_at_the_same_path() -> None:
    """The asset names the training set and the output folder by path; the pod must resolve them alike."""
    launcher = build_resources(env())["launcher"]
    assert isinstance(launcher, K8sLauncher)
    request = TrainingRequest(
        f"{env()['PLATFORM_REPO_ROOT']}/data/training_set",
        f"{env()['PLATFORM_DATA_DIR']}/models-staging/abc",
        f"{env()['PLATFORM_REPO_ROOT']}/params.yaml",
    )
    pod = pod_manifest(launcher.settings(), launcher.command(request), "run-1", "training/candidate_model")
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    run_spec = run_job()["spec"]["template"]["spec"]
    run_claim = next(v for v in run_spec["volumes"] if "persistentVolumeClaim" in v)
    run_mount = next(m for m in run_spec["containers"][0]["volumeMounts"] if m["name"] == run_claim["name"])
    pod_claim = next(v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v)
    pod_mount = next(
        m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == pod_claim["name"]
    )
    assert pod_claim["persistentVolumeClaim"] == run_claim["persistentVolumeClaim"]
    assert pod_mount["mountPath"] == run_mount["mountPath"]
    for path in (request.training_set, request.out, request.params):
        assert path.startswith(pod_mount["mountPath"] + "/"), path
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_definitions_load_with_these_settings_and_either_executor() -> None:
    assert build_definitions(env()).executor is dg.in_process_executor
    assert build_definitions({**env(), "PLATFORM_EXECUTOR": "k8s_job"}).executor is k8s_job_executor


def test_the_code_server_serves_this_project_on_the_image_port() -> None:
    deployment = code_location()
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    args = deployment["codeServerArgs"]
    assert args[args.index("-m") + 1] == tool["module_name"]
    assert args[args.index("--location-name") + 1] == tool["code_location_name"]
    dockerfile = (DEPLOY / "code-location.Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {deployment['port']}$", dockerfile, re.MULTILINE)
    image = values()["dagsterWebserver"]["image"]
    assert image == values()["dagsterDaemon"]["image"] == deployment["image"]


def test_the_chart_renders_the_k8s_profile_instance() -> None:
    """The chart writes dagster.yaml from values; what it cannot say comes verbatim from k8s.yaml."""
    instance = yaml.safe_load(K8S_INSTANCE.read_text())
    v = values()
    assert instance["run_launcher"]["class"] == v["runLauncher"]["type"] == "K8sRunLauncher"
    assert instance["run_coordinator"]["class"] == v["dagsterDaemon"]["runCoordinator"]["type"]
    assert v["dagsterDaemon"]["runMonitoring"]["enabled"] is False  # rendered from below instead
    assert v["dagsterDaemon"]["runRetries"]["enabled"] is False
    extra = v["additionalInstanceConfig"]
    assert extra == {key: instance[key] for key in ("run_monitoring", "run_retries")}
    assert v["runLauncher"]["config"]["k8sRunLauncher"]["failPodOnRunFailure"] is True
    assert instance["run_launcher"]["config"]["fail_pod_on_run_failure"] is True
