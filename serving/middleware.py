"""ASGI middleware of the API: a request id on every answer, and a limit on requests in flight.

Both are plain ASGI (no `BaseHTTPMiddleware`), so a request's body and disconnect still reach the
endpoint as uvicorn sends them, and a refusal costs no more than writing it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection

from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
"""A client's id is echoed if it is 1-128 visible ASCII characters; anything else gets a fresh one."""


def request_id(scope: Scope) -> str:
    """The id `RequestIdMiddleware` gave this request (a fresh one outside it, as in a bare test app)."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = uuid.uuid4().hex
    return str(state["request_id"])


class RequestIdMiddleware:
    """Echoes the client's `X-Request-Id` or makes one; every answer carries it and so does the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER.encode()), ""
        )
        chosen = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = chosen
        header = (REQUEST_ID_HEADER.encode(), chosen.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class ConcurrencyLimitMiddleware:
    """At most `limit` requests in flight; more get a 503 with `Retry-After` at once, in JSON.

    uvicorn's `limit_concurrency` is not used for this: it counts open connections as well as
    requests, so an ingress's idle keep-alive pool alone can make it refuse everything, and it
    answers in plain text. The probes are exempt: a saturated pod is alive, and failing its
    liveness probe would restart it under load.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        refused: Counter,
        in_flight: Gauge,
        exempt: Collection[str] = ("/healthz", "/readyz", "/openapi.json"),
    ) -> None:
        self.app = app
        self.limit = limit
        self.refused = refused
        self.in_flight_gauge = in_flight
        self.exempt = frozenset(exempt)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.refused.labels("concurrency").inc()
            await self.refuse(send)
            return
        self.in_flight += 1
        self.in_flight_gauge.set(self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.in_flight_gauge.set(self.in_flight)

    async def refuse(self, send: Send) -> None:
        detail = f"the server is answering {self.limit} requests already; retry shortly"
        body = json.dumps(
            {"detail": detail, "errors": [{"field": "request", "message": detail, "type": "overloaded"}]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
