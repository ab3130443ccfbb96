"""The Kubernetes launcher end to end against a fake API server: the real training asset runs in a
"pod" (a local process started by the fake), and every way a pod fails ends the step quickly with
an error that names the pod, its namespace and the cause."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from orchestration.profiles import build_resources
from resources import K8sLauncher
from resources.k8s_pod import CONTAINER
from tests.conftest import (
    ASSETS,
    PROJECT,
    SMALL_PLATFORM,
    TrainingPlatform,
    day,
    error_text,
    failures,
    make_dvc_repo,
    set_training,
)
from tests.fakes.fake_kube_api import FakeKubeApi, FakePodBehaviour

NAMESPACE = "ml-training"
SECRET = "flightdelay-storage"
SECRET_VALUE = "planted-0b5e1d7c-secret-value-9f3a"
IMAGE = "registry.example/flightdelay-training:1.4.2"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
STEP = "training__candidate_model"


@pytest.fixture(scope="module")
def trained_inputs(tmp_path_factory: pytest.TempPathFactory, replayed_landing: Path) -> TrainingPlatform:
    """A platform with two weeks of features and a pinned training set, shared by this module's tests.

    The failure tests never reach the point where the asset writes, and the successful ones only
    add registry versions, so sharing it keeps each test to the launch itself.
    """
    root = tmp_path_factory.mktemp("k8s-platform")
    shutil.copytree(replayed_landing, root / "landing")
    make_dvc_repo(root, SMALL_PLATFORM)
    p = TrainingPlatform(root)
    set_training(p, {"max_epochs": 2, "patience": 1})
    p.reference()
    p.bronze(day(1), day(14))
    p.features(day(1), day(14))
    p.materialize(["training/training_set"])
    return p


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubeApi]:
    with FakeKubeApi(workdir=PROJECT) as api:
        api.add_secret(NAMESPACE, SECRET, {"AWS_SECRET_ACCESS_KEY": SECRET_VALUE, "AWS_REGION": "eu-west-1"})
        yield api


def launcher(fake: FakeKubeApi, kubeconfig: Path, **overrides: object) -> K8sLauncher:
    settings: dict[str, object] = {
        "image": IMAGE,
        "namespace": NAMESPACE,
        "gpu_count": 1,
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [GPU_TAINT],
        "env_from_secret": SECRET,
        "labels": {"team": "ml"},
        "load_incluster_config": False,
        "kubeconfig_file": str(fake.write_kubeconfig(kubeconfig)),
        "poll_interval": 0.2,
        "startup_timeout": 3.0,
        **overrides,
    }
    return K8sLauncher(**settings)  # type: ignore[arg-type]


@dataclass
class Launched:
    result: dg.ExecuteInProcessResult
    seconds: float
    log: list[str]
    event_log: str

    @property
    def error(self) -> str:
        """The error the step finally failed with."""
        return failures(self.result).get(STEP, "")

    @property
    def retried(self) -> list[str]:
        """The errors of the attempts that were retried."""
        return [
            error_text(e.event_specific_data.error)  # type: ignore[union-attr]
            for e in self.result.all_events
            if e.is_step_up_for_retry
        ]


def train(p: TrainingPlatform, k8s: K8sLauncher) -> Launched:
    """Materializes the real training asset with the launcher; the run's log messages come back too."""
    with dg.DagsterInstance.ephemeral() as instance:
        start = time.monotonic()
        result = dg.materialize(
            ASSETS,
            selection=["training/candidate_model"],
            resources={**p.resources, "launcher": k8s},
            raise_on_error=False,
            instance=instance,
        )
        seconds = time.monotonic() - start
        entries = instance.all_logs(result.run_id)
    log = [entry.user_message for entry in entries]
    return Launched(result, seconds, log, "\n".join(dg.serialize_value(e) for e in entries))


@pytest.mark.timeout(180)
def test_training_runs_in_the_pod_and_reports_through_pipes(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path
) -> None:
    launched = train(trained_inputs, launcher(fake, tmp_path / "kubeconfig"))
    result = launched.result
    assert result.success, launched.error

    [body] = fake.received
    pod = fake.only_pod()
    spec = body["spec"]
    [container] = spec["containers"]
    assert container["name"] == CONTAINER and container["image"] == IMAGE
    assert container["command"][:3] == ["python", "-m", "ml.training.train"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [GPU_TAINT]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in spec["volumes"]
    assert container["envFrom"] == [{"secretRef": {"name": SECRET}}]
    labels = body["metadata"]["labels"]
    assert labels["dagster/run-id"] == result.run_id
    assert labels["dagster/asset"] == "training.candidate_model"
    assert labels["team"] == "ml"
    # The container really received the Secret's keys and the Pipes bootstrap variables.
    assert pod.env["AWS_REGION"] == "eu-west-1"
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(pod.env)
    assert pod.exit_code == 0

    # Pipes messages came back through the followed log: the entrypoint's log lines and metadata.
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["registry_version"].value >= 1
    assert any(k in metadata for k in ("device", "device_name")), sorted(metadata)
    assert any(m.startswith("training on cpu") for m in launched.log)
    assert any(m.startswith("epoch 2/2") for m in launched.log)

    # The pod is deleted at the end, and nothing else was.
    assert fake.deleted() == [pod.name]
    assert fake.pods == {}


def assert_fails_fast_naming(launched: Launched, pod_name: str, *causes: str) -> None:
    assert not launched.result.success
    assert f"training pod {pod_name} in namespace {NAMESPACE}" in launched.error, launched.error
    for cause in causes:
        assert cause in launched.error, launched.error
    assert launched.retried == [], "a pod that cannot start or whose command fails is not retried"
    assert launched.seconds < 30, f"took {launched.seconds:.0f}s"


@pytest.mark.timeout(120)
def test_a_pod_never_scheduled_fails_after_the_startup_timeout_naming_why(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path
) -> None:
    fake.behaviour = FakePodBehaviour(unschedulable=True)
    launched = train(trained_inputs, launcher(fake, tmp_path / "kubeconfig", startup_timeout=2.0))
    pod = fake.only_pod()
    assert_fails_fast_naming(
        launched, pod.name, "did not start within 2s", "Unschedulable", "Insufficient nvidia.com/gpu"
    )
    assert launched.seconds >= 2.0
    assert fake.deleted() == [pod.name]


@pytest.mark.timeout(120)
def test_an_image_that_cannot_be_pulled_fails_at_once_naming_the_image(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path
) -> None:
    fake.behaviour = FakePodBehaviour(image_pull_error=True)
    launched = train(trained_inputs, launcher(fake, tmp_path / "kubeconfig", startup_timeout=60.0))
    pod = fake.only_pod()
    assert_fails_fast_naming(launched, pod.name, "cannot start its container 'training'", IMAGE)
    assert "ErrImagePull" in launched.error or "ImagePullBackOff" in launched.error
    assert launched.seconds < 20, "an image pull error does not wait for the startup timeout"
    assert fake.deleted() == [pod.name]


@pytest.mark.timeout(120)
def test_a_missing_secret_fails_after_the_startup_timeout_naming_the_secret(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path
) -> None:
    launched = train(
        trained_inputs, launcher(fake, tmp_path / "kubeconfig", env_from_secret="no-such-secret")
    )
    pod = fake.only_pod()
    assert_fails_fast_naming(
        launched, pod.name, "CreateContainerConfigError", 'secret "no-such-secret" not found'
    )


@pytest.mark.timeout(120)
def test_a_command_that_exits_non_zero_fails_with_its_exit_code_and_log_tail(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path
) -> None:
    fake.behaviour = FakePodBehaviour(exit_code=3)
    launched = train(trained_inputs, launcher(fake, tmp_path / "kubeconfig"))
    pod = fake.only_pod()
    assert_fails_fast_naming(
        launched,
        pod.name,
        "container 'training' exited with code 3 (Error)",
        "Last 40 log lines:",
        "starting the training entrypoint",
        "RuntimeError: CUDA error: an illegal memory access was encountered",
    )
    assert fake.deleted() == [pod.name]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stream_survives", [False, True], ids=["log-stream-ends", "log-stream-hangs"])
def test_a_pod_deleted_mid_run_fails_the_attempt_naming_it_and_the_retry_trains(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path, stream_survives: bool
) -> None:
    """dagster-io/dagster#22453: PipesK8sClient alone waits a day for a deleted pod to "launch".

    With the log stream left open (a lost node), only the watchdog ends the wait.
    """
    fake.next_pods(
        FakePodBehaviour(delete_when_logged="training on", log_stream_survives_delete=stream_survives)
    )
    launched = train(trained_inputs, launcher(fake, tmp_path / "kubeconfig"))
    assert launched.result.success, launched.error
    first, second = fake.history
    [retried] = launched.retried
    assert f"training pod {first.name} in namespace {NAMESPACE} was deleted" in retried, retried
    assert first.process is not None and first.process.returncode is not None, (
        "the deleted pod's process ran on"
    )
    assert second.exit_code == 0
    assert fake.deleted() == [first.name, second.name]
    assert launched.seconds < 90


@pytest.mark.timeout(180)
def test_the_secret_value_reaches_the_container_and_appears_nowhere_else(
    trained_inputs: TrainingPlatform, fake: FakeKubeApi, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    launched = train(trained_inputs, launcher(fake, tmp_path / "kubeconfig"))
    assert launched.result.success, launched.error
    pod = fake.only_pod()
    assert pod.env["AWS_SECRET_ACCESS_KEY"] == SECRET_VALUE, "the Secret's value never reached the container"
    out, err = capfd.readouterr()
    assert "training on cpu" in out + err  # the capture did see the run's output
    places = {
        "pod body the API server received": json.dumps(fake.received),
        "run event log": launched.event_log,
        "captured stdout and stderr": out + err,
        "pod log": pod.log_text,
    }
    for place, text in places.items():
        assert SECRET_VALUE not in text, f"the secret value leaked into the {place}"


def test_the_k8s_profile_points_the_launcher_at_a_kubeconfig_and_bounds_its_startup() -> None:
    base = {"PLATFORM_PROFILE": "k8s", "PLATFORM_TRAINING_IMAGE": IMAGE}
    outside = build_resources(
        {**base, "PLATFORM_KUBECONFIG": "kube/config", "PLATFORM_K8S_STARTUP_TIMEOUT": "120"}
    )["launcher"]
    assert isinstance(outside, K8sLauncher)
    assert outside.load_incluster_config is False and outside.kubeconfig_file == "kube/config"
    assert outside.startup_timeout == 120
    inside = build_resources(base)["launcher"]
    assert isinstance(inside, K8sLauncher)
    assert inside.load_incluster_config is True and inside.kubeconfig_file is None
    assert inside.startup_timeout == 900
