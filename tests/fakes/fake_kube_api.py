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
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

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


def _stamp(nanoseconds: int) -> str:
    """RFC 3339 with nanoseconds, as the kubelet writes log timestamps."""
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{rest:09d}Z"


def _time(seconds: float) -> str:
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
            creationTimestamp=_time(self.created),
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
                    "lastTransitionTime": _time(self.created),
                }
            ]
            return status
        if not self.scheduled:
            return status
        running = self.started is not None and self.exit_code is None
        flag = "True" if running else "False"
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _time(self.created)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": _time(self.created)},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": _time(self.created)},
            {"type": "Ready", "status": flag, "lastTransitionTime": _time(self.created)},
        ]
        status.update(hostIP="10.0.0.7", podIP="10.1.0.42", startTime=_time(self.created))
        container_id = f"containerd://{self.uid.replace('-', '')}"
        state: dict[str, Any]
        if self.exit_code is not None:
            state = {
                "terminated": {
                    "exitCode": self.exit_code,
                    "reason": "Completed" if self.exit_code == 0 else "Error",
                    "startedAt": _time(self.started or self.created),
                    "finishedAt": _time(self.finished or time.time()),
                    "containerID": container_id,
                }
            }
        elif running:
            state = {"running": {"startedAt": _time(self.started or self.created)}}
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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
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
                return 409, _status(409, "AlreadyExists", f'pods "{name}" already exists', name)
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
        fields = _selector(query.get("fieldSelector", ""))
        labels = _selector(query.get("labelSelector", ""))
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
        stamps = _flag(query.get("timestamps"))
        return [f"{_stamp(stamp)} {text}\n" if stamps else f"{text}\n" for stamp, text in lines]


def _flag(value: str | None) -> bool:
    """A boolean query parameter read the way the API server's Go code reads it (the client sends "True")."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _selector(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if "=" in part]
    return {key.strip(): value.strip() for key, value in pairs}


def _status(code: int, reason: str, message: str, name: str = "") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": "pods"},
        "code": code,
    }


POD = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)(?P<log>/log)?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
EVENTS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")
NAMESPACE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)$")


def _handler(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            api.calls.append((method, parts.path))
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            if (match := PODS.match(parts.path)) and method == "POST":
                return self._json(*api._create(match["ns"], body))
            if match := PODS.match(parts.path):
                items = [p.manifest() for p in api.listed(match["ns"], query)]
                meta = {"resourceVersion": str(time.time_ns())}
                return self._json(
                    200, {"apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": items}
                )
            if match := POD.match(parts.path):
                return self._pod(method, match["ns"], match["name"], bool(match["log"]), query)
            if match := EVENTS.match(parts.path):
                return self._json(200, self._events(match["ns"], query))
            if match := NAMESPACE.match(parts.path):
                namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": match["ns"]}}
                return self._json(200, {**namespace, "status": {"phase": "Active"}})
            return self._json(404, _status(404, "NotFound", f"the server could not find {parts.path}"))

        def _pod(self, method: str, namespace: str, name: str, log: bool, query: dict[str, str]) -> None:
            pod = api.pod(namespace, name)
            if pod is None:
                return self._json(404, _status(404, "NotFound", f'pods "{name}" not found', name))
            if method == "DELETE":
                api.delete(namespace, name)
                return self._json(200, pod.manifest())
            if not log:
                return self._json(200, pod.manifest())
            if pod.started is None:
                reason = "ContainerCreating" if not pod.scheduled else pod.waiting[0]
                message = f'container "{pod.container["name"]}" in pod "{name}" is waiting to start: {reason}'
                return self._json(400, _status(400, "BadRequest", message, name))
            if _flag(query.get("follow")):
                return self._follow(pod, query)
            with pod.changed:
                text = "".join(api.log_lines(pod, query)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def _follow(self, pod: FakePod, query: dict[str, str]) -> None:
            """A chunked stream of the log that ends when the container exits (or the pod goes)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            filtered = {k: v for k, v in query.items() if k != "tailLines"}
            try:
                with pod.changed:
                    first = api.log_lines(pod, query)
                    sent = len(pod.lines)
                self._chunk("".join(first).encode())
                while True:
                    with pod.changed:
                        while sent >= len(pod.lines) and not pod.log_ended() and not api._stopping:
                            pod.changed.wait(0.5)
                        fresh = api.log_lines(pod, filtered, sent)
                        sent = len(pod.lines)
                        ended = pod.log_ended() or api._stopping
                    self._chunk("".join(fresh).encode())
                    if ended:
                        break
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        def _events(self, namespace: str, query: dict[str, str]) -> dict[str, Any]:
            wanted = _selector(query.get("fieldSelector", "")).get("involvedObject.name")
            items = [
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{pod.name}.{i}", "namespace": namespace},
                    "involvedObject": {"kind": "Pod", "name": pod.name, "namespace": namespace},
                    "type": kind,
                    "reason": reason,
                    "message": message,
                    "count": 1,
                }
                for pod in api.history
                if pod.namespace == namespace and wanted in (None, pod.name)
                for i, (kind, reason, message) in enumerate(pod.events)
            ]
            return {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}

        def _json(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler
