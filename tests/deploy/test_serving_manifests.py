"""deploy/k8s/serving.yaml and deploy/serving.Dockerfile, checked against the server they run.

The probes, the port, the settings and the packages are read from `serving/` itself, so a
renamed route, a new import or a changed default fails here before it fails a rollout.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.app import create_app, create_metrics_app
from serving.config import (
    ADMIN_TOKEN_VARIABLE,
    ADMIN_TOKENS_FILE_VARIABLE,
    TOKEN_VARIABLE,
    TOKENS_FILE_VARIABLE,
    ServingConfig,
)
from serving.schemas import parse
from tests.deploy.deploy_files import (
    DEPLOY,
    KUBERNETES_VERSION,
    MANIFESTS,
    NAMESPACE,
    by_kind,
    code_location,
    final_stage,
    objects_in,
)

SERVING = MANIFESTS / "serving.yaml"
DOCKERFILE = DEPLOY / "serving.Dockerfile"
TOKENS_SECRET = "flightdelay-serving-tokens"
STORAGE_SECRET = "flightdelay-storage"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
INGRESS_KEEP_ALIVE_SECONDS = 60
"""ingress-nginx's `upstream-keepalive-timeout` default."""


def serving_objects() -> dict[str, dict[str, Any]]:
    objects = objects_in(SERVING)
    kinds = {obj["kind"]: obj for obj in objects}
    assert len(kinds) == len(objects), "one object of each kind"
    return kinds


def pod_spec() -> dict[str, Any]:
    return serving_objects()["Deployment"]["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    [only] = pod_spec()["containers"]
    return only


def container_port(name: str = "http") -> int:
    [port] = [p["containerPort"] for p in container()["ports"] if p["name"] == name]
    return port


def named_port(port: int | str) -> int:
    """A probe's or the Service's target port, resolved like the kubelet does: by name or number."""
    if isinstance(port, int):
        return port
    [match] = [p["containerPort"] for p in container()["ports"] if p["name"] == port]
    return match


def image_env() -> dict[str, str]:
    """ENV of the image's final stage, as the container starts with it."""
    env: dict[str, str] = {}
    for op, args in final_stage(DOCKERFILE):
        if op == "ENV":
            env.update(item.partition("=")[::2] for item in shlex.split(args))
    return env


def container_env(mounted: Path | None = None) -> dict[str, str]:
    """What the server process reads: the image's ENV, then the pod's values, Secret values stood in for.

    With `mounted`, the token files of the Secret volume are written there, one token per key, and
    the file variables point at them, as the kubelet's mount would.
    """
    env = image_env()
    for entry in container()["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            env[entry["name"]] = f"from-secret-{entry['valueFrom']['secretKeyRef']['key']}"
    if mounted is not None:
        for variable in (TOKENS_FILE_VARIABLE, ADMIN_TOKENS_FILE_VARIABLE):
            name = Path(env[variable]).name
            mounted.mkdir(parents=True, exist_ok=True)
            (mounted / name).write_text(f"stand-in: from-secret-{name}\n")
            env[variable] = str(mounted / name)
    return env


def readme() -> str:
    """deploy/README.md with shell continuation lines joined."""
    return re.sub(r"\\\n", " ", (DEPLOY / "README.md").read_text())


def routes(tmp_path: Path, metrics: bool = False) -> dict[str, set[str]]:
    """The API's routes, or those of its metrics port."""
    config = ServingConfig(lake_uri=str(tmp_path / "lake"), token="a", admin_token="b")
    app = create_app(config)
    if metrics:
        app = create_metrics_app(app)
    return {route.path: route.methods or set() for route in app.routes if isinstance(route, Route)}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class ReadEnv(dict[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_the_serving_objects_validate_strictly() -> None:
    objects = serving_objects()
    assert set(objects) == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == NAMESPACE
    # Strict: a misspelt field of a probe is an error, not silently dropped by the API server.
    broken = copy.deepcopy(objects["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_probes_and_the_scrape_path_are_routes_the_app_serves(tmp_path: Path) -> None:
    served = routes(tmp_path)
    probes = {name: container()[name]["httpGet"] for name in PROBES}
    for name, get in probes.items():
        assert "GET" in served[get["path"]], name
        assert named_port(get["port"]) == container_port(), name
    # Liveness must not depend on a model (no champion would restart pods forever); readiness must.
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    annotations = serving_objects()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    # Prometheus scrapes the metrics port, where the metrics are and the API is not.
    assert "GET" in routes(tmp_path, metrics=True)[annotations["prometheus.io/path"]]
    assert annotations["prometheus.io/path"] not in served
    assert int(annotations["prometheus.io/port"]) == container_port("metrics")


def test_without_a_model_the_pod_is_live_but_takes_no_traffic(tmp_path: Path) -> None:
    """The server as the pod configures it, on an empty lake: what each probe would see."""
    env = {
        **container_env(tmp_path / "tokens"),
        "PLATFORM_LAKE_URI": str(tmp_path / "lake"),
        "PLATFORM_STORAGE_OPTIONS": "{}",
        "PLATFORM_SERVING_CACHE_DIR": str(tmp_path / "cache"),
        "PLATFORM_SERVING_POLL_SECONDS": "0",
    }
    app = create_app(ServingConfig.from_env(env))
    with TestClient(app) as client, TestClient(create_metrics_app(app)) as metrics:
        status = {name: client.get(container()[name]["httpGet"]["path"]).status_code for name in PROBES}
        scrape = metrics.get(
            serving_objects()["Deployment"]["spec"]["template"]["metadata"]["annotations"][
                "prometheus.io/path"
            ]
        )
    assert status == {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503}
    assert "serving_model_version 0.0" in scrape.text


def test_the_server_listens_where_the_pod_and_the_service_send_traffic(tmp_path: Path) -> None:
    config = ServingConfig.from_env(container_env(tmp_path))
    assert config.host == config.metrics_host == "0.0.0.0"
    assert config.port == container_port()
    assert config.metrics_port == container_port("metrics")
    assert ("EXPOSE", f"{config.port} {config.metrics_port}") in final_stage(DOCKERFILE)
    service = serving_objects()["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    [port] = service["ports"]
    assert port["port"] == 80 and named_port(port["targetPort"]) == config.port


def test_every_platform_variable_of_the_pod_and_the_image_is_one_the_server_reads() -> None:
    """A misspelt setting would be ignored silently and the default used."""
    env = ReadEnv(container_env())
    ServingConfig.from_env(env)
    assert sorted(name for name in env if name.startswith("PLATFORM_") and name not in env.read) == []


def test_the_server_reads_the_platform_lake_with_the_platform_storage_secret() -> None:
    config = ServingConfig.from_env(container_env())
    platform = code_location()["env"]
    assert config.lake_uri == platform["PLATFORM_LAKE_URI"]
    assert config.storage_options == json.loads(platform["PLATFORM_STORAGE_OPTIONS"])
    assert container_env()["AWS_REGION"] == platform["AWS_REGION"]
    assert container()["envFrom"] == [
        {"secretRef": {"name": s["name"]}} for s in code_location()["envSecrets"]
    ]
    assert container()["envFrom"] == [{"secretRef": {"name": STORAGE_SECRET}}]


def test_the_tokens_come_only_from_the_files_of_their_secret_mounted_as_a_volume() -> None:
    names = [entry["name"] for entry in container()["env"]]
    assert len(names) == len(set(names)), "a repeated variable: the last one wins"
    entries = {entry["name"]: entry for entry in container()["env"]}
    assert TOKEN_VARIABLE not in entries and ADMIN_TOKEN_VARIABLE not in entries
    files = {entries[v]["value"] for v in (TOKENS_FILE_VARIABLE, ADMIN_TOKENS_FILE_VARIABLE)}
    assert len(files) == 2, "the server refuses one token for both roles"
    [volume] = [v for v in pod_spec()["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == TOKENS_SECRET and not volume["secret"].get("optional", False)
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]
    # A subPath mount is never refreshed: the whole volume is mounted, so a rotation reaches the pod.
    assert "subPath" not in mount and mount["readOnly"] is True
    keys = {item["key"] for item in volume["secret"]["items"]}
    assert files == {f"{mount['mountPath']}/{item['path']}" for item in volume["secret"]["items"]}
    # No Secret reaches the container as a variable, and the image names no token.
    assert not [e for e in container()["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert TOKEN_VARIABLE not in DOCKERFILE.read_text() and ADMIN_TOKEN_VARIABLE not in DOCKERFILE.read_text()
    # The README creates (and rotates) exactly the keys the pod mounts.
    creates = [line for line in readme().splitlines() if "--from-file=clients.yaml=" in line]
    assert len(creates) == 2
    assert all(set(re.findall(r"--from-file=([\w.-]+)=", line)) == keys for line in creates)


def test_the_pod_runs_as_non_root_on_a_read_only_root_with_scratch_space_for_what_it_writes() -> None:
    spec, box = pod_spec(), container()
    pod_user = f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert ("USER", pod_user) in final_stage(DOCKERFILE)  # the image's files belong to the pod's user
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert box["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # No API token: the account is the server's own, unbound, and mounts none.
    account = serving_objects()["ServiceAccount"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    assert all(
        s["name"] != account["metadata"]["name"] for b in by_kind("RoleBinding") for s in b["subjects"]
    )
    # Every folder the process writes is an emptyDir: the model cache, HOME and the temp folder.
    scratch = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in box["volumeMounts"] if m["name"] in scratch}
    config = ServingConfig.from_env(container_env())
    assert {str(config.cache_dir), container_env()["HOME"], "/tmp"} <= mounts


def test_a_stopping_pod_leaves_the_service_before_it_stops_answering() -> None:
    spec, box = pod_spec(), container()
    sleep = box["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 5  # longer than endpoint removal takes to reach kube-proxy and ingresses
    # SIGTERM comes only after the sleep, within the grace period: the rest drains and flushes.
    assert spec["terminationGracePeriodSeconds"] - sleep >= 30
    # uvicorn cancels what is still in flight in time for the app's shutdown (the log's flush).
    config = ServingConfig.from_env(container_env())
    assert sleep + config.graceful_shutdown_seconds + 15 <= spec["terminationGracePeriodSeconds"]
    # An idle connection is closed by the ingress (60 s in ingress-nginx) before the server closes it.
    assert config.keep_alive_seconds > INGRESS_KEEP_ALIVE_SECONDS
    strategy = serving_objects()["Deployment"]["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_the_autoscaler_owns_the_replica_count_of_this_deployment() -> None:
    objects = serving_objects()
    deployment, hpa = objects["Deployment"], objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"]  # `kubectl apply` would reset the autoscaler's count
    assert hpa["minReplicas"] == 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in container()["resources"]["requests"]  # utilization is a share of the request
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_the_selectors_pick_the_serving_pods_and_no_other() -> None:
    objects = serving_objects()
    template = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": objects["Deployment"]["spec"]["selector"]["matchLabels"],
        "Service": objects["Service"]["spec"]["selector"],
        "PodDisruptionBudget": objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    }
    assert all(selects(selector, template) for selector in selectors.values()), selectors
    assert selectors["Service"] == selectors["PodDisruptionBudget"] == selectors["Deployment"]
    # The one-off Job's pods share the part-of label only: none of these selectors takes them in.
    job_pods = [
        doc["spec"]["template"]["metadata"]["labels"]
        for doc in objects_in(DEPLOY / "jobs" / "prepare-work-volume.yaml")
    ]
    assert not any(selects(selector, labels) for selector in selectors.values() for labels in job_pods)
    budget = objects["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == 1 < objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def test_the_pod_is_sized_for_two_cores_and_its_thread_pools_follow_the_limit() -> None:
    resources = container()["resources"]
    for name in ("cpu", "memory"):
        assert parse_quantity(resources["requests"][name]) <= parse_quantity(resources["limits"][name]), name
    assert parse_quantity(resources["limits"]["cpu"]) == 2
    pools = {
        e["name"]: e["valueFrom"]["resourceFieldRef"]
        for e in container()["env"]
        if "resourceFieldRef" in e.get("valueFrom", {})
    }
    assert set(pools) == {"OMP_NUM_THREADS", "POLARS_MAX_THREADS"}
    assert all(
        ref == {"containerName": container()["name"], "resource": "limits.cpu", "divisor": "1"}
        for ref in pools.values()
    )


def test_the_readme_deploys_this_image_and_sends_a_request_the_server_accepts(tmp_path: Path) -> None:
    image = container()["image"].rsplit("/", 1)[1]
    assert f'sed "s|{image}|' in readme()
    [body] = re.findall(r"-d '(\{.*?\})'", readme(), re.DOTALL)
    request = parse(body.encode(), ServingConfig.from_env(container_env()).max_batch)
    assert len(request.flights) == 1
    [path] = re.findall(r"-d '.*?' +http://127\.0\.0\.1:\d+(/\S+)", readme(), re.DOTALL)
    assert "POST" in routes(tmp_path)[path]


def admitted(policy: dict[str, Any]) -> dict[int, set[str]]:
    """Container port -> the namespaces a NetworkPolicy admits to it (by `kubernetes.io/metadata.name`)."""
    ports: dict[int, set[str]] = {}
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from") and rule.get("ports"), "a rule without `from` or `ports` admits everyone"
        namespaces = set()
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector"}, peer  # no ipBlock, no pods of this namespace
            assert set(peer["namespaceSelector"]) == {"matchLabels"}
            [(label, name)] = peer["namespaceSelector"]["matchLabels"].items()
            assert label == "kubernetes.io/metadata.name"  # set by the API server, not by a user
            namespaces.add(name)
        for port in rule["ports"]:
            assert port["protocol"] == "TCP" and "endPort" not in port
            ports.setdefault(named_port(port["port"]), set()).update(namespaces)
    return ports


def test_the_network_policy_admits_the_api_from_the_ingress_and_the_metrics_from_monitoring() -> None:
    policy = serving_objects()["NetworkPolicy"]
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    template = serving_objects()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], template)
    assert policy["spec"]["podSelector"]["matchLabels"] == serving_objects()["Service"]["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress stays open: the lake is outside
    config = ServingConfig.from_env(container_env())
    assert admitted(policy) == {config.port: {INGRESS_NAMESPACE}, config.metrics_port: {MONITORING_NAMESPACE}}
    # The ports it names are the ones the server listens on, the Service's and the scrape's.
    annotations = serving_objects()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == config.metrics_port
    [service_port] = serving_objects()["Service"]["spec"]["ports"]
    assert named_port(service_port["targetPort"]) == config.port


def test_the_namespaces_of_the_network_policy_change_with_the_sed_the_manifest_shows() -> None:
    """The chart does not cover the server, so the manifest names how to point the policy elsewhere."""
    text = SERVING.read_text()
    [(ingress_pattern, _), (monitoring_pattern, _)] = re.findall(r'-e "s\|(.+?)\|(.+?)\|"', text)
    changed = re.sub(ingress_pattern, ": ingress-system", text, flags=re.MULTILINE)
    changed = re.sub(monitoring_pattern, ": observability", changed, flags=re.MULTILINE)
    objects = {obj["kind"]: obj for obj in yaml.safe_load_all(changed) if obj}
    config = ServingConfig.from_env(container_env())
    assert admitted(objects["NetworkPolicy"]) == {
        config.port: {"ingress-system"},
        config.metrics_port: {"observability"},
    }
    unchanged = {k: v for k, v in objects.items() if k != "NetworkPolicy"}
    assert unchanged == {k: v for k, v in serving_objects().items() if k != "NetworkPolicy"}
