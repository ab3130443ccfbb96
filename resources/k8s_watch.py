"""Bounded waits on the training pod, each ending in an error that names its cause.

`dagster_k8s.PipesK8sClient` can wait far too long on a pod that will never finish: a pod
that is never scheduled has no container status, and `wait_for_pod` waits for one up to
a day; a pod deleted while it runs ends its log stream, and `wait_for_pod` then polls
for it to "launch" for a day (dagster-io/dagster#22453). A pod on a lost node can also
leave the followed log stream open with nobody writing to it.

`BoundedPipesK8sClient` keeps PipesK8sClient (pod body, Pipes session, log reader) and
replaces only its waiting, through the `consume_pod_logs` hook that receives the API
client: the pod must start within `startup_timeout`, a watchdog cuts the log stream
once the pod is gone, and the end is read from the container's terminated state. Each
failure raises `dg.Failure` naming the pod, its namespace and the reason; only a lost
pod is retried (training resumes from its last checkpoint), since a pod that cannot
start or whose command fails would fail the same way again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import kubernetes
from dagster_k8s import PipesK8sClient
from dagster_k8s.pipes import PipesK8sPodLogsMessageReader

# Waiting reasons after which the container will not start without someone changing the pod.
FATAL_WAITING = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff"}
)
PIPES_LINE = '{"__dagster_pipes_version"'
# Seconds one poll of the API may take, so that an unreachable API server cannot stall a wait.
REQUEST_TIMEOUT = 30


@dataclass
class PodWatch:
    """Polls one pod and turns what it sees into a return or a `dg.Failure`."""

    core_api: Any
    namespace: str
    pod_name: str
    container: str
    poll_interval: float
    startup_timeout: float
    run_timeout: float
    log_tail_lines: int = 40
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @property
    def where(self) -> str:
        return f"training pod {self.pod_name} in namespace {self.namespace}"

    def read(self) -> Any | None:
        """The pod, or None once the API server no longer has it."""
        try:
            return self.core_api.read_namespaced_pod(
                self.pod_name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _state(self, pod: Any) -> Any | None:
        for status in pod.status.container_statuses or []:
            if status.name == self.container:
                return status.state
        return None

    def wait_until_started(self) -> None:
        """Returns once the container runs or has already ended; fails if it cannot start in time."""
        start = self.clock()
        while True:
            pod = self.read()
            if pod is None:
                raise self.lost("was deleted before its container started")
            state = self._state(pod)
            if state is not None and (state.running is not None or state.terminated is not None):
                return
            if pod.status.phase in ("Failed", "Succeeded"):
                return
            if state is not None and state.waiting is not None and state.waiting.reason in FATAL_WAITING:
                raise self.failed(f"cannot start its container {self.container!r}: {_waiting(state)}")
            if self.clock() - start > self.startup_timeout:
                raise self.failed(f"did not start within {self.startup_timeout:g}s: {self._pending(pod)}")
            self.sleep(self.poll_interval)

    def _pending(self, pod: Any) -> str:
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return f"not scheduled, {condition.reason}: {condition.message}"
        state = self._state(pod)
        if state is not None and state.waiting is not None:
            return f"container {self.container!r} waiting, {_waiting(state)}"
        return f"phase {pod.status.phase}"

    def wait_until_finished(self) -> None:
        """Returns when the container exited 0; fails on any other end, or if the pod is gone."""
        start = self.clock()
        while True:
            pod = self.read()
            if pod is None:
                raise self.lost("was deleted before its container finished")
            state = self._state(pod)
            if state is not None and state.terminated is not None:
                ended = state.terminated
                if ended.exit_code == 0:
                    return
                why = ended.reason + (f": {ended.message}" if ended.message else "")
                raise self.failed(
                    f"failed: container {self.container!r} exited with code {ended.exit_code} ({why}). "
                    f"{self.log_tail()}"
                )
            if pod.status.phase == "Failed":
                # Ended with no container state of its own: deadline exceeded, evicted, node lost.
                raise self.lost(f"failed: {pod.status.reason}: {pod.status.message}")
            if self.clock() - start > self.run_timeout:
                raise self.failed(f"still ran after {self.run_timeout:g}s")
            self.sleep(self.poll_interval)

    def log_tail(self) -> str:
        """The container's last log lines without the Pipes messages (already in the event log)."""
        try:
            text = self.core_api.read_namespaced_pod_log(
                self.pod_name,
                self.namespace,
                container=self.container,
                tail_lines=self.log_tail_lines * 4,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            ).data.decode("utf-8", errors="replace")
        except kubernetes.client.ApiException as exc:
            return f"Its log could not be read: {exc.status} {exc.reason}"
        lines = [line for line in text.splitlines() if not line.startswith(PIPES_LINE)]
        return f"Last {self.log_tail_lines} log lines:\n" + "\n".join(lines[-self.log_tail_lines :])

    def failed(self, what: str) -> dg.Failure:
        return dg.Failure(description=f"{self.where} {what}", allow_retries=False)

    def lost(self, what: str) -> dg.Failure:
        return dg.Failure(description=f"{self.where} {what}", allow_retries=True)

    def delete(self) -> None:
        """Deletes the pod; one that is already gone is fine."""
        try:
            self.core_api.delete_namespaced_pod(
                self.pod_name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise

    @contextmanager
    def watched_logs(self) -> Iterator[LogStreamGuard]:
        """An API whose log streams a watchdog cuts once the pod is gone, so a read never hangs."""
        guard = LogStreamGuard(self.core_api)
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(self.poll_interval):
                with suppress(Exception):  # a failed poll is retried at the next tick
                    if self.read() is None:
                        guard.cut()
                        return

        watchdog = threading.Thread(target=watch, name=f"watch-{self.pod_name}", daemon=True)
        watchdog.start()
        try:
            yield guard
        finally:
            stop.set()
            watchdog.join()


@dataclass
class LogStreamGuard:
    """Passes calls to the API client, keeping the open log streams so that they can be cut."""

    core_api: Any
    streams: list[Any] = field(default_factory=list)
    is_cut: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read_namespaced_pod_log(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            if self.is_cut:
                return iter(())
        response = self.core_api.read_namespaced_pod_log(*args, **kwargs)
        with self.lock:
            self.streams.append(response)
            if self.is_cut:
                response.shutdown()
        return response

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            for response in self.streams:
                response.shutdown()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core_api, name)


def _waiting(state: Any) -> str:
    message = state.waiting.message
    return f"{state.waiting.reason}" + (f": {message}" if message else "")


class BoundedPipesK8sClient(PipesK8sClient):
    """PipesK8sClient whose waits are bounded and end in errors naming the cause (see module doc)."""

    def __init__(
        self,
        *,
        container: str,
        startup_timeout: float,
        run_timeout: float,
        log_tail_lines: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.container = container
        self.startup_timeout = startup_timeout
        self.run_timeout = run_timeout
        self.log_tail_lines = log_tail_lines

    @contextmanager
    def consume_pod_logs(  # type: ignore[override]
        self,
        context: Any,
        client: Any,
        namespace: str,
        pod_name: str,
        enable_multi_container_logs: bool = False,
        ignore_containers: set | None = None,
    ) -> Iterator[None]:
        watch = PodWatch(
            client.core_api,
            namespace,
            pod_name,
            self.container,
            self.poll_interval,
            self.startup_timeout,
            self.run_timeout,
            self.log_tail_lines,
        )
        try:
            watch.wait_until_started()
            if isinstance(self.message_reader, PipesK8sPodLogsMessageReader):
                with watch.watched_logs() as core_api:
                    try:
                        self.message_reader.consume_pod_logs(
                            context=context, core_api=core_api, pod_name=pod_name, namespace=namespace
                        )
                    except kubernetes.client.ApiException as exc:
                        if exc.status != 404:
                            raise
            watch.wait_until_finished()
            yield
        finally:
            watch.delete()
