"""Deployment profiles: one environment variable picks where data lives and how work runs.

`local` (the default) keeps everything under PLATFORM_DATA_DIR (default `.data`); the
locations and storage options are read by `ml.settings.lake_settings`, the one parser of
them, which the model server uses too.

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
and PLATFORM_K8S_POLL_INTERVAL how often the pod is polled.

The freshness checks fail when a day has waited longer than PLATFORM_FRESHNESS_LAG_SECONDS
to reach bronze or the features, or (when set, for live feeds) when the newest day is older
than PLATFORM_FRESHNESS_MAX_AGE_DAYS; PLATFORM_FRESHNESS_INTERVAL_SECONDS is how often the
freshness sensor runs them.

Alerts go to PLATFORM_ALERT_WEBHOOK_URL (a Slack incoming webhook or anything taking its
JSON; unset: alerts are only logged), with links into the UI at PLATFORM_UI_URL. The
webhook URL carries its secret in its path, so it is passed as `dg.EnvVar`: the UI shows
the variable's name, and each process reads the value from its own environment.

A variable that is not set leaves its field at the resource's own default, which is
stated once, on the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from ml.settings import json_variable, lake_settings, present
from resources import (
    AlertsResource,
    ArtifactsResource,
    DvcResource,
    FreshnessPolicy,
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
K8S_FIELDS = dict(
    namespace="PLATFORM_K8S_NAMESPACE",
    gpu_count="PLATFORM_GPU_COUNT",
    gpu_resource="PLATFORM_GPU_RESOURCE",
    service_account="PLATFORM_K8S_SERVICE_ACCOUNT",
    env_from_secret="PLATFORM_STORAGE_SECRET",
    shared_claim="PLATFORM_K8S_SHARED_CLAIM",
    shared_mount_path="PLATFORM_K8S_SHARED_MOUNT",
    startup_timeout="PLATFORM_K8S_STARTUP_TIMEOUT",
    poll_interval="PLATFORM_K8S_POLL_INTERVAL",
)
LANDING_WATCH_FIELDS = dict(
    settle_seconds="PLATFORM_LANDING_SETTLE_SECONDS", max_days_per_run="PLATFORM_LANDING_MAX_DAYS_PER_RUN"
)
RETRAIN_FIELDS = dict(new_feature_days="PLATFORM_RETRAIN_NEW_DAYS", on_drift="PLATFORM_RETRAIN_ON_DRIFT")
REPO_FIELDS = dict(repo_root="PLATFORM_REPO_ROOT")
FRESHNESS_FIELDS = dict(
    lag_seconds="PLATFORM_FRESHNESS_LAG_SECONDS", max_age_days="PLATFORM_FRESHNESS_MAX_AGE_DAYS"
)
ALERT_FIELDS = dict(ui_url="PLATFORM_UI_URL")
WEBHOOK_VARIABLE = "PLATFORM_ALERT_WEBHOOK_URL"


def _launcher(profile: str, env: Mapping[str, str]) -> TrainingLauncher:
    """Where training runs: a local subprocess, or a GPU pod in the `k8s` profile."""
    if profile == "local":
        return LocalLauncher(**present(env, {"cwd": "PLATFORM_REPO_ROOT"}))
    image = env.get("PLATFORM_TRAINING_IMAGE", "")
    if not image:
        raise ValueError("the k8s profile needs PLATFORM_TRAINING_IMAGE (the training image to run)")
    kubeconfig = env.get("PLATFORM_KUBECONFIG", "")
    return K8sLauncher(
        image=image,
        node_selector=json_variable(env, "PLATFORM_GPU_NODE_SELECTOR", {}),  # type: ignore[arg-type]
        tolerations=json_variable(env, "PLATFORM_GPU_TOLERATIONS", []),  # type: ignore[arg-type]
        image_pull_secrets=[s for s in env.get("PLATFORM_IMAGE_PULL_SECRETS", "").split(",") if s],
        load_incluster_config=not kubeconfig,
        kubeconfig_file=kubeconfig or None,
        **present(env, K8S_FIELDS),  # type: ignore[arg-type]
    )


def _alerts(env: Mapping[str, str]) -> AlertsResource:
    webhook = {"webhook_url": dg.EnvVar(WEBHOOK_VARIABLE)} if env.get(WEBHOOK_VARIABLE, "") else {}
    return AlertsResource(**webhook, **present(env, ALERT_FIELDS))


def build_resources(env: Mapping[str, str]) -> dict[str, object]:
    profile = env.get(PROFILE_VARIABLE, "local")
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={profile!r} is not one of {', '.join(PROFILES)}")
    lake = lake_settings(env)
    options = lake.storage_options
    return {
        "lake": LakeResource(root=lake.lake_uri, storage_options=options),
        "landing": LandingResource(
            root=lake.landing_uri, quarantine_root=lake.quarantine_uri, storage_options=options
        ),
        "dvc": DvcResource(
            remote=lake.dvc_remote, endpoint_url=lake.endpoint_url, **present(env, REPO_FIELDS)
        ),
        "artifacts": ArtifactsResource(
            root=lake.artifacts_uri, storage_options=options, staging_dir=lake.staging_dir
        ),
        "launcher": _launcher(profile, env),
        "landing_watch": LandingWatch(**present(env, LANDING_WATCH_FIELDS)),  # type: ignore[arg-type]
        "retrain_policy": RetrainPolicy(**present(env, RETRAIN_FIELDS)),  # type: ignore[arg-type]
        "alerts": _alerts(env),
        "freshness_policy": FreshnessPolicy(**present(env, FRESHNESS_FIELDS)),  # type: ignore[arg-type]
    }
