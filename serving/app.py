"""The ASGI app: predict, model info, health, readiness, metrics and an admin reload.

Probes and metrics are open (a kubelet and Prometheus call them); predictions and model
info need the client token; reloading needs the admin token. Scoring a large batch runs
in a worker thread, so the event loop keeps answering probes meanwhile; a small one is
scored on the loop (see `INLINE_FLIGHTS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ml.lake.delta import DeltaStore
from ml.online.features import servable_range
from serving.config import ServingConfig
from serving.metrics import ServingMetrics
from serving.model_store import ModelStore, NotReadyError, Served
from serving.prediction_log import PredictionLog
from serving.schemas import errors_of, flight_numbers, is_batch_too_large, outside_range, parse, schedules

log = logging.getLogger("serving")
INLINE_FLIGHTS = 16
"""Requests up to this many flights are scored on the event loop: a fraction of a millisecond,
less than the hop to a worker thread and back costs."""
Handler = Callable[[Request], Awaitable[Response]]
ModelHandler = Callable[[Request, Served], Awaitable[Response]]
Access = Literal["client", "admin"]


class BodyTooLargeError(Exception):
    pass


@dataclass(frozen=True)
class AppState:
    """What one app serves with, kept on the app rather than in closures so the handlers can live at
    module level while two apps in one process (as in the tests) still keep apart."""

    config: ServingConfig
    store: ModelStore
    metrics: ServingMetrics
    prediction_log: PredictionLog


def app_state(app: Starlette) -> AppState:
    """Typed access to what `create_app` left on `app.state`, which Starlette types as `Any`."""
    state: AppState = app.state.serving
    return state


def error(
    status: int, detail: str, errors: list[dict[str, str]] | None = None, **headers: str
) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail}
    if errors is not None:
        content["errors"] = errors
    return JSONResponse(content, status_code=status, headers=headers or None)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` (by its header or while it streams)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def reload(state: AppState, trigger: str) -> str:
    """Swap in what the registry and snapshot pointer name now; returns the outcome counted."""
    store, metrics = state.store, state.metrics
    try:
        outcome = "swapped" if store.refresh() else "unchanged"
    except NotReadyError as exc:
        log.warning("nothing to serve yet: %s", exc)
        outcome = "not_ready"
    except Exception:
        log.exception("reload (%s) failed; still serving what was loaded before", trigger)
        outcome = "failed"
    metrics.reloads.labels(trigger, outcome).inc()
    served = store.current
    if served is not None:
        metrics.model_version.set(served.version.version)
        midnight = dt.datetime.combine(served.snapshot.last_day, dt.time(), tzinfo=dt.UTC)
        metrics.snapshot_last_day.set(midnight.timestamp())
    if outcome == "swapped":
        log.info("serving model v%s with snapshot %s", served.version.version, served.snapshot_id)  # type: ignore[union-attr]
    return outcome


def authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def unauthorized() -> JSONResponse:
    return error(
        401,
        "missing or wrong bearer token",
        [{"field": "Authorization", "message": "expected 'Bearer <token>'", "type": "unauthorized"}],
        **{"WWW-Authenticate": "Bearer"},
    )


def refusal(request: Request, config: ServingConfig, access: Access) -> JSONResponse | None:
    """None when the request carries the token `access` needs. The other valid token gets a 403, not a
    401, so its holder learns the token is good but not for this endpoint."""
    token, other = (
        (config.token, config.admin_token) if access == "client" else (config.admin_token, config.token)
    )
    if authorized(request, token):
        return None
    if authorized(request, other):
        return error(403, "this token may not call this endpoint")
    return unauthorized()


def endpoint(name: str, access: Access | None = None) -> Callable[[Handler], Handler]:
    """Counts and times every answer of a route; checks the bearer token first where one is needed."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            state = app_state(request.app)
            started = time.perf_counter()
            status = 500
            try:
                refused = None if access is None else refusal(request, state.config, access)
                response = refused if refused is not None else await handler(request)
                status = response.status_code
                return response
            finally:
                state.metrics.requests.labels(name, str(status)).inc()
                state.metrics.latency.labels(name).observe(time.perf_counter() - started)

        return run

    return wrap


def with_model(name: str) -> Callable[[ModelHandler], Handler]:
    """A client endpoint that needs a loaded model: 503 until there is one, else the handler gets it."""

    def wrap(handler: ModelHandler) -> Handler:
        @endpoint(name, "client")
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            served = app_state(request.app).store.current
            if served is None:
                return error(503, "no model is loaded yet")
            return await handler(request, served)

        return run

    return wrap


@with_model("predict")
async def predict(request: Request, served: Served) -> Response:
    state = app_state(request.app)
    config = state.config
    if "json" not in request.headers.get("content-type", ""):
        return error(
            415,
            "send JSON",
            [{"field": "Content-Type", "message": "expected application/json", "type": "media_type"}],
        )
    try:
        body = await read_body(request, config.max_body_bytes)
    except BodyTooLargeError:
        message = f"the body exceeds {config.max_body_bytes} bytes"
        return error(413, message, [{"field": "body", "message": message, "type": "body_too_large"}])
    try:
        parsed = parse(body, config.max_batch)
    except ValidationError as exc:
        status = 413 if is_batch_too_large(exc) else 422
        return error(status, "invalid request", errors_of(exc))
    flights = schedules(parsed)
    problems = outside_range(flights, *servable_range(served.snapshot, config.max_days_ahead))
    if problems:
        return error(422, "invalid request", problems)
    if len(flights) <= INLINE_FLIGHTS:
        probabilities = served.predict_schedules(flights)
    else:
        probabilities = await run_in_threadpool(served.predict_schedules, flights)
    version = served.version.version
    state.metrics.predictions.labels(str(version)).inc(len(probabilities))
    state.metrics.batch_size.observe(len(probabilities))
    state.prediction_log.record(
        flights,
        probabilities,
        version,
        served.snapshot_id,
        request.headers.get("x-request-id"),
        flight_numbers(parsed),
        requested_at=dt.datetime.now(dt.UTC),
    )
    return JSONResponse(
        {
            "model_version": version,
            "predictions": [{"delay_probability": float(p), "model_version": version} for p in probabilities],
        }
    )


@with_model("model")
async def model(request: Request, served: Served) -> Response:
    config = app_state(request.app).config
    first, last = servable_range(served.snapshot, config.max_days_ahead)
    info = served.describe()
    info["served_days"] = {"first": first.isoformat(), "last": last.isoformat()}
    info["limits"] = {"max_batch": config.max_batch, "max_body_bytes": config.max_body_bytes}
    return JSONResponse(info)


@endpoint("admin_reload", "admin")
async def admin_reload(request: Request) -> Response:
    state = app_state(request.app)
    outcome = await run_in_threadpool(reload, state, "admin")
    served = state.store.current
    body = {"outcome": outcome, "model_version": served.version.version if served else None}
    if outcome == "failed":
        return JSONResponse(body, status_code=500)
    if outcome == "not_ready":
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


@endpoint("healthz")
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@endpoint("readyz")
async def readyz(request: Request) -> Response:
    served = app_state(request.app).store.current
    if served is None:
        return error(503, "no model is loaded yet")
    return JSONResponse({"status": "ready", "model_version": served.version.version})


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(app_state(request.app).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def poll(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.config.poll_seconds)
        await run_in_threadpool(reload, state, "poll")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state = app_state(app)
    await run_in_threadpool(reload, state, "start")
    state.prediction_log.start()
    task = asyncio.create_task(poll(state)) if state.config.poll_seconds > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(state.prediction_log.close)


def create_app(
    config: ServingConfig, store: ModelStore | None = None, prediction_log: PredictionLog | None = None
) -> Starlette:
    store = store or ModelStore(config)
    metrics = ServingMetrics()
    prediction_log = prediction_log or PredictionLog(
        DeltaStore(config.lake_uri, config.storage_options or None)
    )
    prediction_log.register(metrics.registry)
    metrics.model_version.set(0)
    app = Starlette(
        routes=[
            Route("/v1/predict", predict, methods=["POST"]),
            Route("/v1/model", model, methods=["GET"]),
            Route("/v1/admin/reload", admin_reload, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.serving = AppState(config, store, metrics, prediction_log)
    return app
