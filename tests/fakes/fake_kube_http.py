"""The HTTP side of the fake Kubernetes API server: the core/v1 routes `PipesK8sClient` calls."""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.fake_kube_pod import FakePod

if TYPE_CHECKING:
    from tests.fakes.fake_kube_api import FakeKubeApi


def query_flag(value: str | None) -> bool:
    """A boolean query parameter read the way the API server's Go code reads it (the client sends "True")."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def label_selector(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if "=" in part]
    return {key.strip(): value.strip() for key, value in pairs}


def api_status(code: int, reason: str, message: str, name: str = "") -> dict[str, Any]:
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


def request_handler(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
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
            return self._json(404, api_status(404, "NotFound", f"the server could not find {parts.path}"))

        def _pod(self, method: str, namespace: str, name: str, log: bool, query: dict[str, str]) -> None:
            pod = api.pod(namespace, name)
            if pod is None:
                return self._json(404, api_status(404, "NotFound", f'pods "{name}" not found', name))
            if method == "DELETE":
                api.delete(namespace, name)
                return self._json(200, pod.manifest())
            if not log:
                return self._json(200, pod.manifest())
            if pod.started is None:
                reason = "ContainerCreating" if not pod.scheduled else pod.waiting[0]
                message = f'container "{pod.container["name"]}" in pod "{name}" is waiting to start: {reason}'
                return self._json(400, api_status(400, "BadRequest", message, name))
            if query_flag(query.get("follow")):
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
            wanted = label_selector(query.get("fieldSelector", "")).get("involvedObject.name")
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
