"""The pods of the fake Kubernetes API server: what a test says they do, and how they report it.

`FakePod` keeps a received pod body, its local process and log, and renders the status
the real API server reports (phases, conditions, container states), so the client code
under test takes its real branches.
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

UNSCHEDULABLE_MESSAGE = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)


@dataclass(frozen=True)
class FakePodBehaviour:
    """How a pod created from now on behaves; the default runs its command to the end."""

    unschedulable: bool = False
    image_pull_error: bool = False
    exit_code: int | None = None
    crash_message: str = "RuntimeError: CUDA error: an illegal memory access was encountered"
    delete_when_logged: str | None = None
    log_stream_survives_delete: bool = False
    schedule_delay: float = 0.05
    start_delay: float = 0.1


def log_stamp(nanoseconds: int) -> str:
    """RFC 3339 with nanoseconds, as the kubelet writes log timestamps."""
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{rest:09d}Z"


def api_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakePod:
    """One pod's object and the local process standing in for its container."""

    namespace: str
    name: str
    body: dict[str, Any]
    behaviour: FakePodBehaviour
    created: float = field(default_factory=time.time)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    scheduled: bool = False
    unschedulable: bool = False
    waiting: tuple[str, str | None] = ("ContainerCreating", None)
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[int, str]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    gone: bool = False
    process: subprocess.Popen[bytes] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def container(self) -> dict[str, Any]:
        return self.body["spec"]["containers"][0]

    @property
    def phase(self) -> str:
        if self.exit_code is not None:
            return "Succeeded" if self.exit_code == 0 else "Failed"
        return "Running" if self.started is not None else "Pending"

    @property
    def log_text(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def log_ended(self) -> bool:
        """Whether a followed log stream ends now (the container exited, or the pod is gone)."""
        if self.exit_code is not None:
            return True
        return self.gone and not self.behaviour.log_stream_survives_delete

    def manifest(self) -> dict[str, Any]:
        pod = copy.deepcopy(self.body)
        pod["apiVersion"], pod["kind"] = "v1", "Pod"
        pod["metadata"].update(
            namespace=self.namespace,
            uid=self.uid,
            resourceVersion=str(len(self.lines) + 1),
            creationTimestamp=api_time(self.created),
        )
        if self.scheduled:
            pod["spec"]["nodeName"] = "fake-gpu-node-1"
        pod["status"] = self.status()
        return pod

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"phase": self.phase, "qosClass": "Burstable"}
        if self.unschedulable:
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": UNSCHEDULABLE_MESSAGE,
                    "lastTransitionTime": api_time(self.created),
                }
            ]
            return status
        if not self.scheduled:
            return status
        running = self.started is not None and self.exit_code is None
        flag = "True" if running else "False"
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": api_time(self.created)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": api_time(self.created)},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": api_time(self.created)},
            {"type": "Ready", "status": flag, "lastTransitionTime": api_time(self.created)},
        ]
        status.update(hostIP="10.0.0.7", podIP="10.1.0.42", startTime=api_time(self.created))
        container_id = f"containerd://{self.uid.replace('-', '')}"
        state: dict[str, Any]
        if self.exit_code is not None:
            state = {
                "terminated": {
                    "exitCode": self.exit_code,
                    "reason": "Completed" if self.exit_code == 0 else "Error",
                    "startedAt": api_time(self.started or self.created),
                    "finishedAt": api_time(self.finished or time.time()),
                    "containerID": container_id,
                }
            }
        elif running:
            state = {"running": {"startedAt": api_time(self.started or self.created)}}
        else:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        started = self.started is not None
        status["containerStatuses"] = [
            {
                "name": self.container["name"],
                "image": self.container.get("image", ""),
                "imageID": f"{self.container.get('image', '')}@sha256:{'0' * 64}" if started else "",
                "ready": running,
                "started": running,
                "restartCount": 0,
                "state": state,
                **({"containerID": container_id} if started else {}),
            }
        ]
        return status
