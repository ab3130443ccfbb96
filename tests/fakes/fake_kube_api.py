"""A fake Kubernetes API server: the core/v1 calls that `dagster_k8s.PipesK8sClient` makes.

No cluster runs in the tests, so this server answers on 127.0.0.1 what the kubernetes
python client asks for a Pipes pod: create, read and list pods, the pod log (whole, a
tail, or followed with `follow=true&timestamps=true`, the way the Pipes message reader
reads it), events, and delete. It "runs" a pod by starting the container's command as a
local process in a given folder, with the container's environment (`env` values and
`envFrom`/`secretKeyRef` resolved from the Secrets the fake holds), and reports the
phases, conditions and container states in the shape the real API server does, so the
client code under test takes its real branches.

A test picks how the next pods behave (`FakePodBehaviour`): never scheduled, failing to
pull the image, a container that exits non-zero, a pod deleted while it runs (optionally
with the log stream left hanging, as when a node is lost). Every received pod body is
kept, so a test can assert on exactly what the cluster would have been sent.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.fake_kube_http import api_status, label_selector, query_flag, request_handler
from tests.fakes.fake_kube_pod import UNSCHEDULABLE_MESSAGE, FakePod, FakePodBehaviour, log_stamp

__all__ = ["FakeKubeApi", "FakePodBehaviour"]


class FakeKubeApi:
    """The fake API server; use as a context manager, point the client at `write_kubeconfig()`."""

    def __init__(
        self,
        workdir: Path,
        executables: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.executables = dict(executables or {"python": sys.executable})
        self.base_env = dict(
            base_env
            if base_env is not None
            else {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
        )
        self.behaviour = FakePodBehaviour()
        self.queued: list[FakePodBehaviour] = []
        self.received: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.history: list[FakePod] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), request_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)

    # --- test side ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKubeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        for pod in list(self.history):
            self._kill(pod)
            with pod.changed:
                pod.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def next_pods(self, *behaviours: FakePodBehaviour) -> None:
        """The next pods behave like these, in order; later ones like `behaviour`."""
        self.queued.extend(behaviours)

    def add_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self.secrets[(namespace, name)] = dict(data)

    def only_pod(self) -> FakePod:
        """The one pod created so far (deleted or not)."""
        assert len(self.history) == 1, f"expected one pod, got {[p.name for p in self.history]}"
        return self.history[0]

    def deleted(self) -> list[str]:
        """Names of the pods deleted through the API, in order."""
        return [path.rsplit("/", 1)[-1] for method, path in self.calls if method == "DELETE"]

    def delete(self, namespace: str, name: str) -> FakePod | None:
        """Remove a pod at once (grace period 0): its process is killed, reads answer 404."""
        with self._lock:
            pod = self.pods.pop((namespace, name), None)
        if pod is None:
            return None
        with pod.changed:
            pod.gone = True
            pod.changed.notify_all()
        self._kill(pod)
        return pod

    # --- pod lifecycle -----------------------------------------------------------------

    def _create(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        metadata = body.setdefault("metadata", {})
        name = metadata.get("name") or f"{metadata.get('generateName', 'pod-')}{uuid.uuid4().hex[:5]}"
        metadata["name"] = name
        with self._lock:
            if (namespace, name) in self.pods:
                return 409, api_status(409, "AlreadyExists", f'pods "{name}" already exists', name)
            self.received.append(copy.deepcopy(body))
            behaviour = self.queued.pop(0) if self.queued else self.behaviour
            pod = FakePod(namespace, name, body, behaviour)
            self.pods[(namespace, name)] = pod
            self.history.append(pod)
        threading.Thread(target=self._run_pod, args=(pod,), name=f"fake-pod-{name}", daemon=True).start()
        return 201, pod.manifest()

    def _set(self, pod: FakePod, **changes: Any) -> bool:
        with pod.changed:
            if pod.gone or self._stopping:
                return False
            for key, value in changes.items():
                setattr(pod, key, value)
            pod.changed.notify_all()
            return True

    def _run_pod(self, pod: FakePod) -> None:
        behaviour = pod.behaviour
        time.sleep(behaviour.schedule_delay)
        if behaviour.unschedulable:
            pod.events.append(("Warning", "FailedScheduling", UNSCHEDULABLE_MESSAGE))
            self._set(pod, unschedulable=True)
            return
        if not self._set(pod, scheduled=True):
            return
        time.sleep(behaviour.start_delay)
        image = pod.container.get("image", "")
        if behaviour.image_pull_error:
            pulled = f'failed to pull and unpack image "{image}": not found'
            message = f"rpc error: code = NotFound desc = {pulled}"
            pod.events.append(("Warning", "Failed", f'Failed to pull image "{image}": {message}'))
            self._set(pod, waiting=("ErrImagePull", message))
            time.sleep(0.5)
            self._set(pod, waiting=("ImagePullBackOff", f'Back-off pulling image "{image}"'))
            return
        env, missing = self._environment(pod)
        if missing:
            self._set(pod, waiting=("CreateContainerConfigError", f'secret "{missing}" not found'))
            return
        command = self._command(pod)
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not self._set(pod, process=process, env=env, started=time.time()):
            self._kill_process(process)
            process.wait()
            return
        assert process.stdout is not None
        last = 0
        for raw in process.stdout:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            with pod.changed:
                last = max(time.time_ns(), last + 1)  # strictly increasing, as the reader dedups by stamp
                pod.lines.append((last, text))
                pod.changed.notify_all()
            trigger = behaviour.delete_when_logged
            if trigger and trigger in text and not pod.gone:
                self.delete(pod.namespace, pod.name)
        code = process.wait()
        self._set(pod, exit_code=code, finished=time.time())

    def _command(self, pod: FakePod) -> list[str]:
        behaviour = pod.behaviour
        if behaviour.exit_code is not None:
            script = (
                "import sys; print('starting the training entrypoint', flush=True); "
                f"print({behaviour.crash_message!r}, file=sys.stderr); sys.exit({behaviour.exit_code})"
            )
            return [sys.executable, "-c", script]
        command = [*pod.container.get("command", []), *pod.container.get("args", [])]
        return [self.executables.get(command[0], command[0]), *command[1:]]

    def _environment(self, pod: FakePod) -> tuple[dict[str, str], str | None]:
        """The container's environment as the kubelet builds it: envFrom first, then env."""
        env = dict(self.base_env)
        for source in pod.container.get("envFrom", []):
            ref = source.get("secretRef")
            if ref is None:
                continue
            secret = self.secrets.get((pod.namespace, ref["name"]))
            if secret is None:
                if ref.get("optional"):
                    continue
                return env, ref["name"]
            prefix = source.get("prefix", "")
            env.update({f"{prefix}{key}": value for key, value in secret.items()})
        for variable in pod.container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
                continue
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                secret = self.secrets.get((pod.namespace, ref["name"]))
                if secret is None or ref["key"] not in secret:
                    return env, ref["name"]
                env[variable["name"]] = secret[ref["key"]]
        return env, None

    def _kill(self, pod: FakePod) -> None:
        if pod.process is not None and pod.process.poll() is None:
            self._kill_process(pod.process)

    @staticmethod
    def _kill_process(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    # --- API side ----------------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> FakePod | None:
        with self._lock:
            return self.pods.get((namespace, name))

    def listed(self, namespace: str, query: Mapping[str, str]) -> list[FakePod]:
        with self._lock:
            pods = [p for (ns, _), p in self.pods.items() if ns == namespace]
        fields = label_selector(query.get("fieldSelector", ""))
        labels = label_selector(query.get("labelSelector", ""))
        return [
            p
            for p in pods
            if all(p.name == v for k, v in fields.items() if k == "metadata.name")
            and all(p.body["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    def log_lines(self, pod: FakePod, query: Mapping[str, str], start: int = 0) -> list[str]:
        lines = pod.lines[start:]
        if "sinceSeconds" in query:
            since = time.time_ns() - int(query["sinceSeconds"]) * 1_000_000_000
            lines = [(stamp, text) for stamp, text in lines if stamp >= since]
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) > 0 else []
        stamps = query_flag(query.get("timestamps"))
        return [f"{log_stamp(stamp)} {text}\n" if stamps else f"{text}\n" for stamp, text in lines]
