"""Deployment profiles: one environment variable picks where data lives and how work runs.

`local` (the default) keeps everything under PLATFORM_DATA_DIR (default `.data`):
landing zone, quarantine and lake. Each location can be pointed elsewhere alone:
PLATFORM_LANDING_URI, PLATFORM_QUARANTINE_URI, PLATFORM_LAKE_URI,
PLATFORM_ARTIFACTS_URI, PLATFORM_DVC_REMOTE (a DVC remote URL), with non-secret
storage options as JSON in PLATFORM_STORAGE_OPTIONS (credentials come from the usual
AWS_* variables, which deltalake, pyarrow and DVC read themselves). The storage options
serve the lake, the landing zone and the artifacts alike; their AWS_ENDPOINT_URL also
becomes the endpoint of an s3:// DVC remote.

`k8s` trains in a GPU pod: PLATFORM_TRAINING_IMAGE (required), PLATFORM_K8S_NAMESPACE,
PLATFORM_GPU_COUNT, PLATFORM_GPU_RESOURCE, PLATFORM_GPU_NODE_SELECTOR (JSON object),
PLATFORM_GPU_TOLERATIONS (JSON list), PLATFORM_K8S_SERVICE_ACCOUNT,
PLATFORM_IMAGE_PULL_SECRETS (comma-separated), PLATFORM_STORAGE_SECRET (the Secret whose
keys become the pod's environment), PLATFORM_K8S_SHARED_CLAIM and PLATFORM_K8S_SHARED_MOUNT
(a ReadWriteMany claim mounted at the same path as in the run's pod, where the training
set and the model folder live; PLATFORM_DATA_DIR and PLATFORM_REPO_ROOT point into it).
PLATFORM_KUBECONFIG points at a kubeconfig file when
Dagster runs outside the cluster (default: the in-cluster service account);
PLATFORM_K8S_STARTUP_TIMEOUT is how many seconds a pod may take to be scheduled and start
(default 900) and PLATFORM_K8S_POLL_INTERVAL how often the pod is polled (default 5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from resources import (
    ArtifactStore,
    DvcResource,
    K8sLauncher,
    LakeResource,
    LandingResource,
    LandingWatch,
    LocalLauncher,
    RetrainPolicy,
    TrainingLauncher,
)

PROFILE_VARIABLE = "PLATFORM_PROFILE"
PROFILES = ("local", "k8s")
SECRET_OPTION_WORDS = ("secret", "token", "password", "access_key", "account_key")


def _json(env: Mapping[str, str], name: str, default: str) -> object:
    try:
        return json.loads(env.get(name, default))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from exc


def _launcher(profile: str, env: Mapping[str, str]) -> TrainingLauncher:
    """Where training runs: a local subprocess, or a GPU pod in the `k8s` profile."""
    if profile == "local":
        return LocalLauncher(cwd=env.get("PLATFORM_REPO_ROOT", "."))
    image = env.get("PLATFORM_TRAINING_IMAGE", "")
    if not image:
        raise ValueError("the k8s profile needs PLATFORM_TRAINING_IMAGE (the training image to run)")
    return K8sLauncher(
        image=image,
        namespace=env.get("PLATFORM_K8S_NAMESPACE", "dagster"),
        gpu_count=int(env.get("PLATFORM_GPU_COUNT", "1")),
        gpu_resource=env.get("PLATFORM_GPU_RESOURCE", "nvidia.com/gpu"),
        node_selector=_json(env, "PLATFORM_GPU_NODE_SELECTOR", "{}"),  # type: ignore[arg-type]
        tolerations=_json(env, "PLATFORM_GPU_TOLERATIONS", "[]"),  # type: ignore[arg-type]
        service_account=env.get("PLATFORM_K8S_SERVICE_ACCOUNT", ""),
        image_pull_secrets=[s for s in env.get("PLATFORM_IMAGE_PULL_SECRETS", "").split(",") if s],
        env_from_secret=env.get("PLATFORM_STORAGE_SECRET", ""),
        shared_claim=env.get("PLATFORM_K8S_SHARED_CLAIM", ""),
        shared_mount_path=env.get("PLATFORM_K8S_SHARED_MOUNT", "/srv/flightdelay"),
        load_incluster_config=not env.get("PLATFORM_KUBECONFIG"),
        kubeconfig_file=env.get("PLATFORM_KUBECONFIG") or None,
        startup_timeout=float(env.get("PLATFORM_K8S_STARTUP_TIMEOUT", "900")),
        poll_interval=float(env.get("PLATFORM_K8S_POLL_INTERVAL", "5")),
    )


def build_resources(env: Mapping[str, str]) -> dict[str, object]:
    profile = env.get(PROFILE_VARIABLE, "local")
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={profile!r} is not one of {', '.join(PROFILES)}")
    data_dir = env.get("PLATFORM_DATA_DIR", ".data").rstrip("/")
    options = _json(env, "PLATFORM_STORAGE_OPTIONS", "{}")
    if not isinstance(options, dict):
        raise ValueError("PLATFORM_STORAGE_OPTIONS must be a JSON object of strings")
    secrets = sorted(k for k in options if any(word in k.lower() for word in SECRET_OPTION_WORDS))
    if secrets:
        raise ValueError(
            f"PLATFORM_STORAGE_OPTIONS holds credentials ({', '.join(secrets)}): configuration is shown "
            "in the UI and run logs; set them as environment variables (AWS_ACCESS_KEY_ID, ...) instead"
        )
    return {
        "lake": LakeResource(root=env.get("PLATFORM_LAKE_URI", f"{data_dir}/lake"), storage_options=options),
        "landing": LandingResource(
            root=env.get("PLATFORM_LANDING_URI", f"{data_dir}/landing"),
            quarantine_root=env.get("PLATFORM_QUARANTINE_URI", f"{data_dir}/quarantine"),
            storage_options=options,
        ),
        "dvc": DvcResource(
            repo_root=env.get("PLATFORM_REPO_ROOT", "."),
            remote=env.get("PLATFORM_DVC_REMOTE", ""),
            endpoint_url=str(options.get("AWS_ENDPOINT_URL", "")),
        ),
        "artifacts": ArtifactStore(
            root=env.get("PLATFORM_ARTIFACTS_URI", f"{data_dir}/models"),
            storage_options=options,
            staging_dir=f"{data_dir}/models-staging",
        ),
        "launcher": _launcher(profile, env),
        "landing_watch": LandingWatch(
            settle_seconds=float(env.get("PLATFORM_LANDING_SETTLE_SECONDS", "10")),
            max_days_per_run=int(env.get("PLATFORM_LANDING_MAX_DAYS_PER_RUN", "31")),
        ),
        "retrain_policy": RetrainPolicy(
            new_feature_days=int(env.get("PLATFORM_RETRAIN_NEW_DAYS", "7")),
            on_drift=env.get("PLATFORM_RETRAIN_ON_DRIFT", "true").lower() == "true",
        ),
    }
