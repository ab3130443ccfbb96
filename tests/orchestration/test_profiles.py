"""The profiles pass on only what the environment sets: every other field keeps its one default."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.profiles import build_resources
from resources import AlertsResource, K8sLauncher, LandingWatch, LocalLauncher, RetrainPolicy

K8S = {"PLATFORM_PROFILE": "k8s", "PLATFORM_TRAINING_IMAGE": "registry.example/train:1"}


def defaults(resource: type) -> dict[str, object]:
    return {name: f.get_default(call_default_factory=True) for name, f in resource.model_fields.items()}


def test_unset_variables_leave_the_resource_defaults() -> None:
    resources = build_resources(K8S)
    launcher = resources["launcher"]
    assert isinstance(launcher, K8sLauncher)
    expected = defaults(K8sLauncher)
    for name in (
        "namespace",
        "gpu_count",
        "gpu_resource",
        "shared_mount_path",
        "startup_timeout",
        "poll_interval",
    ):
        assert getattr(launcher, name) == expected[name], name
    assert resources["landing_watch"] == LandingWatch()
    assert resources["retrain_policy"] == RetrainPolicy()
    assert build_resources({})["launcher"] == LocalLauncher()


def test_set_variables_are_typed_by_the_resource() -> None:
    env = {
        **K8S,
        "PLATFORM_GPU_COUNT": "2",
        "PLATFORM_K8S_STARTUP_TIMEOUT": "60",
        "PLATFORM_LANDING_MAX_DAYS_PER_RUN": "7",
        "PLATFORM_RETRAIN_ON_DRIFT": "false",
    }
    resources = build_resources(env)
    launcher = resources["launcher"]
    assert isinstance(launcher, K8sLauncher)
    assert (launcher.gpu_count, launcher.startup_timeout) == (2, 60.0)
    assert resources["landing_watch"].max_days_per_run == 7  # type: ignore[attr-defined]
    assert resources["retrain_policy"].on_drift is False  # type: ignore[attr-defined]


def test_a_value_of_the_wrong_type_names_its_field() -> None:
    with pytest.raises(Exception, match="gpu_count"):
        build_resources({**K8S, "PLATFORM_GPU_COUNT": "two"})


def test_alerts_read_the_webhook_through_an_env_var_and_default_to_logging_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off = build_resources({})["alerts"]
    assert off == AlertsResource() and not off.enabled  # type: ignore[attr-defined]
    url = "http://127.0.0.1:8765/alerts"
    monkeypatch.setenv("PLATFORM_ALERT_WEBHOOK_URL", url)
    env = {"PLATFORM_ALERT_WEBHOOK_URL": url, "PLATFORM_UI_URL": "http://dagster.example"}
    alerts = build_resources(env)["alerts"]
    assert isinstance(alerts, AlertsResource)
    assert alerts.webhook_url == "PLATFORM_ALERT_WEBHOOK_URL"  # the UI shows the variable, not the secret
    assert alerts.ui_url == "http://dagster.example"
    with dg.build_resources({"alerts": alerts}) as resolved:
        assert resolved.alerts.webhook_url == url
