"""Launchers run the training entrypoint (`python -m ml.training.train`) and relay its Pipes messages.

The asset only builds a `TrainingRequest`; where the process runs is the launcher's
business: a local subprocess here, a GPU pod on Kubernetes in the `k8s` profile.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from resources.k8s_pod import CONTAINER, PodSettings, pod_labels, pod_spec


@dataclass(frozen=True)
class TrainingRequest:
    training_set: str
    out: str
    params: str

    def arguments(self) -> list[str]:
        return ["--training-set", self.training_set, "--out", self.out, "--params", self.params]


class TrainingLauncher(dg.ConfigurableResource):
    """Base of the launchers: runs a request and returns what the entrypoint reported."""

    def launch(self, context: dg.AssetExecutionContext, request: TrainingRequest) -> dg.MaterializeResult:
        raise NotImplementedError


class LocalLauncher(TrainingLauncher):
    """Runs the entrypoint as a Pipes subprocess with this interpreter (CPU, or a local GPU)."""

    cwd: str = Field(default=".", description="Working folder of the training process.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")

    def launch(self, context: dg.AssetExecutionContext, request: TrainingRequest) -> dg.MaterializeResult:
        client = dg.PipesSubprocessClient(cwd=self.cwd, env=self.env or None)
        command = [sys.executable, "-m", "ml.training.train", *request.arguments()]
        return client.run(context=context, command=command).get_materialize_result()


class K8sLauncher(TrainingLauncher):
    """Runs the same entrypoint in a GPU pod through `dagster_k8s.PipesK8sClient` (profile `k8s`).

    The pod spec (`resources.k8s_pod`) carries the GPU limits, node selector, tolerations, a
    memory-backed /dev/shm, a deadline, non-root and read-only-root security settings, the
    storage credentials from a Secret (never a value in config) and labels naming the run.
    Every wait is bounded (`resources.k8s_watch`): a pod that cannot start, fails, or is
    deleted ends the step with an error naming the pod, its namespace and the reason.
    """

    image: str = Field(description="Training image (deploy/training.Dockerfile).")
    namespace: str = Field(default="dagster")
    gpu_count: int = Field(default=1, ge=0, description="GPUs per pod; 0 trains on the pod's CPUs.")
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of the GPU.")
    cpu_request: str = Field(default="4")
    cpu_limit: str = Field(default="8")
    memory_request: str = Field(default="16Gi")
    memory_limit: str = Field(default="32Gi")
    shm_size: str = Field(default="8Gi", description="Size of the memory-backed /dev/shm.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)
    service_account: str = Field(default="", description="Service account of the pod (none: the default).")
    image_pull_secrets: list[str] = Field(default_factory=list)
    env_from_secret: str = Field(default="", description="Secret whose keys become the pod's environment.")
    active_deadline_seconds: int = Field(default=6 * 3600, ge=60)
    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    shared_claim: str = Field(
        default="",
        description="PersistentVolumeClaim (ReadWriteMany) that the run's pod also mounts: the training "
        "set is read from it and the model written to it. Empty: nothing shared (a local cluster).",
    )
    shared_mount_path: str = Field(
        default="/srv/flightdelay", description="Where the shared claim is mounted."
    )
    load_incluster_config: bool = Field(default=True, description="False: use kubeconfig_file instead.")
    kubeconfig_file: str | None = Field(default=None)
    poll_interval: float = Field(default=5.0, gt=0)
    startup_timeout: float = Field(
        default=900.0,
        gt=0,
        description="Seconds the pod may take to be scheduled, pull its image and start; then the step fails.",
    )
    log_tail_lines: int = Field(default=40, ge=1, description="Log lines quoted when the container fails.")

    def settings(self) -> PodSettings:
        return PodSettings(
            image=self.image,
            namespace=self.namespace,
            gpu_count=self.gpu_count,
            gpu_resource=self.gpu_resource,
            cpu_request=self.cpu_request,
            cpu_limit=self.cpu_limit,
            memory_request=self.memory_request,
            memory_limit=self.memory_limit,
            shm_size=self.shm_size,
            node_selector=self.node_selector,
            tolerations=self.tolerations,
            service_account=self.service_account,
            image_pull_secrets=self.image_pull_secrets,
            env_from_secret=self.env_from_secret,
            active_deadline_seconds=self.active_deadline_seconds,
            labels=self.labels,
            shared_claim=self.shared_claim,
            shared_mount_path=self.shared_mount_path,
        )

    def command(self, request: TrainingRequest) -> list[str]:
        """The entrypoint, told the pod's memory limit: it keeps the encoded splits in memory only when
        they take at most half of it, else streams them from files under the pod's /tmp."""
        return [
            "python",
            "-m",
            "ml.training.train",
            *request.arguments(),
            "--memory-budget",
            self.memory_limit,
        ]

    def launch(self, context: dg.AssetExecutionContext, request: TrainingRequest) -> dg.MaterializeResult:
        from resources.k8s_watch import BoundedPipesK8sClient

        settings = self.settings()
        command = self.command(request)
        # The pod cannot outlive its deadline; a little more covers the kubelet reporting it.
        run_timeout = self.active_deadline_seconds + self.startup_timeout + 300
        client = BoundedPipesK8sClient(
            container=CONTAINER,
            startup_timeout=self.startup_timeout,
            run_timeout=run_timeout,
            log_tail_lines=self.log_tail_lines,
            load_incluster_config=self.load_incluster_config,
            kubeconfig_file=self.kubeconfig_file,
            poll_interval=self.poll_interval,
        )
        invocation = client.run(
            context=context,
            image=self.image,
            command=command,
            namespace=self.namespace,
            base_pod_meta={
                "labels": pod_labels(settings, context.run.run_id, context.asset_key.to_user_string())
            },
            base_pod_spec=pod_spec(settings, command),
            pod_wait_timeout=run_timeout,
            delete_pod_on_completion=False,  # BoundedPipesK8sClient deletes it, tolerating one already gone
        )
        return invocation.get_materialize_result()
