"""A webhook receiver on 127.0.0.1 that records the alerts posted to it, for tests and the simulation.

    with AlertReceiver(jsonl=path) as receiver:     # port=0: any free port
        env["PLATFORM_ALERT_WEBHOOK_URL"] = receiver.url
        ...
        receiver.wait_for(1, kind="run_failure")    # the JSON bodies, once there are enough
        receiver.alerts                             # every body received so far

It answers `ok` like Slack's incoming webhooks; `refuse(n)` makes it answer the next n
posts with an error instead, to show retries. Each body is also appended as one line to
`jsonl` when given, which `read_alerts(path)` reads back from another process. It runs
alone as `python -m devtools.alert_receiver [--port 8765] [--jsonl alerts.jsonl]`.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from devtools.processes import wait_until

HOST = "127.0.0.1"
PATH = "/alerts"


class AlertReceiver:
    def __init__(self, port: int = 0, jsonl: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._alerts: list[dict[str, Any]] = []
        self._refusals: list[int] = []
        self._jsonl = jsonl
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The webhook URL to configure (PLATFORM_ALERT_WEBHOOK_URL)."""
        return f"http://{HOST}:{self.port}{PATH}"

    @property
    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._alerts)

    def of_kind(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Alerts whose `platform.kind` is `kind` (all alerts for None)."""
        return [a for a in self.alerts if kind is None or a.get("platform", {}).get("kind") == kind]

    def wait_for(
        self, count: int = 1, kind: str | None = None, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """The alerts (of `kind`) once there are at least `count`; WaitTimeoutError past `timeout`."""
        return wait_until(
            lambda: self.of_kind(kind),
            lambda alerts: len(alerts) >= count,
            what=f"{count} alert(s){f' of kind {kind}' if kind else ''} at {self.url}",
            timeout=timeout,
            interval=0.2,
            show=lambda alerts: json.dumps([a.get("platform") for a in alerts])[:2000],
        )

    def refuse(self, times: int, status: int = 503) -> None:
        """Answer the next `times` posts with `status` and record nothing, like a webhook having trouble."""
        with self._lock:
            self._refusals.extend([status] * times)

    def clear(self) -> None:
        with self._lock:
            self._alerts.clear()

    def start(self) -> AlertReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> AlertReceiver:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _refusal(self) -> int | None:
        with self._lock:
            return self._refusals.pop(0) if self._refusals else None

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._alerts.append(body)
            if self._jsonl is not None:
                with self._jsonl.open("a") as out:
                    out.write(json.dumps(body) + "\n")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                refusal = receiver._refusal()
                if refusal is not None:
                    self._answer(refusal, "refused")
                    return
                try:
                    body = json.loads(data)
                except json.JSONDecodeError:
                    self._answer(400, "invalid JSON")
                    return
                if not isinstance(body, dict):
                    self._answer(400, "a JSON object is expected")
                    return
                receiver._record(body)
                self._answer(200, "ok")

            def _answer(self, status: int, text: str) -> None:
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def read_alerts(jsonl: Path) -> list[dict[str, Any]]:
    """The alerts a receiver appended to `jsonl` (none if it does not exist yet)."""
    if not jsonl.exists():
        return []
    return [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.alert_receiver", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--jsonl", type=Path, default=None, help="Also append each alert to this file.")
    args = parser.parse_args(argv)
    receiver = AlertReceiver(args.port, args.jsonl)
    print(f"receiving alerts at {receiver.url} (Ctrl-C ends)", flush=True)
    seen = 0
    with receiver:
        try:
            while True:
                threading.Event().wait(0.5)
                alerts = receiver.alerts
                for alert in alerts[seen:]:
                    print(alert.get("text", json.dumps(alert)), "\n", flush=True)
                seen = len(alerts)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
