"""The ASGI apps: the API (predict, model info, health, readiness, an admin reload, its OpenAPI
document) and, for a port of its own, the Prometheus metrics.

Probes, the document and the metrics are open (a kubelet and Prometheus call them; a
NetworkPolicy decides who reaches which port); predictions and model info need a client
token, reloading an admin token (`serving.tokens`). Every answer is JSON, errors included
(404, 405, 500 too), and carries `X-Request-Id`; an answer a model gave carries
`X-Model-Version`. A client that leaves mid-request is counted (status 499), not an error of
the server. Scoring a large batch runs in a worker thread, so the event loop keeps answering
probes meanwhile; a small one is scored on the loop (see `INLINE_FLIGHTS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ml.online.features import servable_range
from serving.config import ServingConfig
from serving.metrics import ServingMetrics
from serving.middleware import ConcurrencyLimitMiddleware, RequestIdMiddleware, request_id
from serving.model_checks import nonfinite
from serving.model_store import ModelStore, NotReadyError, Served
from serving.openapi import openapi_document
from serving.prediction_log import PredictionLog
from serving.schemas import errors_of, flight_numbers, is_batch_too_large, outside_range, parse, schedules
from serving.shadow_scorer import ShadowScorer
from serving.tokens import Role, Tokens

log = logging.getLogger("serving")
INLINE_FLIGHTS = 16
"""Requests up to this many flights are scored on the event loop: a fraction of a millisecond,
less than the hop to a worker thread and back costs."""
Handler = Callable[[Request], Awaitable[Response]]
ModelHandler = Callable[[Request, Served], Awaitable[Response]]
Access = Role
CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request whose client left before the answer: counted, never sent."""


class BodyTooLargeError(Exception):
    pass


class BodyTimeoutError(Exception):
    """The body did not arrive within `body_timeout_seconds`: a stalled upload must not hold a slot."""


@dataclass(frozen=True)
class AppState:
    """What one app serves with, kept on the app rather than in closures so the handlers can live at
    module level while two apps in one process (as in the tests) still keep apart."""

    config: ServingConfig
    store: ModelStore
    metrics: ServingMetrics
    prediction_log: PredictionLog
    tokens: Tokens
    openapi: dict[str, Any]
    shadow: ShadowScorer


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
    """The body, refused as soon as it is known to exceed `limit` (by its header or while it streams).

    Raises BodyTimeoutError when it takes longer than the app's `body_timeout_seconds`, and
    Starlette's ClientDisconnect when the client leaves first; `endpoint` answers both.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks, size = [], 0
    try:
        async with asyncio.timeout(app_state(request.app).config.body_timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeoutError from None
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
    for refusal in store.refusals:
        metrics.model_refusals.labels(str(refusal.version), refusal.check).inc()
    served = store.current
    if served is not None:
        metrics.model_version.set(served.version.version)
        metrics.model_fallback.set(1 if served.refused else 0)
        midnight = dt.datetime.combine(served.snapshot.last_day, dt.time(), tzinfo=dt.UTC)
        metrics.snapshot_last_day.set(midnight.timestamp())
    if outcome == "swapped":
        log.info("serving model v%s with snapshot %s", served.version.version, served.snapshot_id)  # type: ignore[union-attr]
    return outcome


def bearer(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def unauthorized() -> JSONResponse:
    return error(
        401,
        "missing or wrong bearer token",
        [{"field": "Authorization", "message": "expected 'Bearer <token>'", "type": "unauthorized"}],
        **{"WWW-Authenticate": "Bearer"},
    )


def authenticate(request: Request, tokens: Tokens, access: Access) -> str | JSONResponse:
    """The name of the token `access` needs, or the answer refusing the request. A valid token of the
    other role gets a 403, not a 401, so its holder learns the token is good but not for this endpoint."""
    given = bearer(request)
    identity = None if given is None else tokens.identify(given)
    if identity is None:
        return unauthorized()
    role, name = identity
    if role != access:
        return error(403, "this token may not call this endpoint")
    return name


def endpoint(name: str, access: Access | None = None) -> Callable[[Handler], Handler]:
    """Counts and times every answer of a route; checks the bearer token first where one is needed.

    The token's name is left in `request.state.client` for the handler (never the token). A
    client that leaves before its answer is counted as a disconnect with status 499 and is not
    logged; a stalled body gets a 408; any other exception is logged with the request id and
    answered 500 in JSON.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            state = app_state(request.app)
            started = time.perf_counter()
            try:
                response = await answer(request, state)
            except ClientDisconnect:
                state.metrics.client_disconnects.labels(name).inc()
                log.debug(
                    "%s: the client left before its answer (request %s)", name, request_id(request.scope)
                )
                response = Response(status_code=CLIENT_CLOSED_REQUEST)
            except BodyTimeoutError:
                seconds = f"{state.config.body_timeout_seconds:g}"
                message = f"the body did not arrive within {seconds} s"
                response = error(
                    408, message, [{"field": "body", "message": message, "type": "body_timeout"}]
                )
            except Exception:
                log.exception("%s failed (request %s)", name, request_id(request.scope))
                response = server_error()
            state.metrics.requests.labels(name, str(response.status_code)).inc()
            state.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return response

        async def answer(request: Request, state: AppState) -> Response:
            if access is not None:
                identity = authenticate(request, state.tokens, access)
                if isinstance(identity, Response):
                    return identity
                request.state.client = identity
            return await handler(request)

        return run

    return wrap


def with_model(name: str) -> Callable[[ModelHandler], Handler]:
    """A client endpoint that needs a loaded model: 503 until there is one, else the handler gets it
    and its answer names the model's version in `X-Model-Version`."""

    def wrap(handler: ModelHandler) -> Handler:
        @endpoint(name, "client")
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            served = app_state(request.app).store.current
            if served is None:
                return error(503, "no model is loaded yet")
            response = await handler(request, served)
            response.headers["X-Model-Version"] = str(served.version.version)
            return response

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
    unknown = [served.vocabulary.unknown(f) for f in flights]
    if any(unknown):
        for fields in unknown:
            for name in fields:
                state.metrics.unknown_values.labels(name).inc()
        if config.unknown_values == "refuse":
            return error(422, "the model has never seen some values", unseen_errors(flights, unknown, served))
    if len(flights) <= INLINE_FLIGHTS:
        probabilities = served.predict_schedules(flights)
    else:
        probabilities = await run_in_threadpool(served.predict_schedules, flights)
    version = served.version.version
    bad = nonfinite(probabilities)
    if bad:  # never sent, never logged as answered
        state.metrics.nonfinite_predictions.labels(str(version)).inc(bad)
        log.error("model v%s answered %d non-finite probabilities of %d", version, bad, len(flights))
        return error(500, f"model version {version} answered a non-finite probability for {bad} flight(s)")
    state.metrics.predictions.labels(str(version)).inc(len(probabilities))
    state.metrics.batch_size.observe(len(probabilities))
    state.prediction_log.record(
        flights,
        probabilities,
        version,
        served.snapshot_id,
        request_id(request.scope),
        flight_numbers(parsed),
        requested_at=dt.datetime.now(dt.UTC),
        client=request.state.client,  # the token's name, never the token
        unknown=[",".join(fields) for fields in unknown],
    )
    state.shadow.submit(
        served,
        flights,
        request_id(request.scope),
        flight_numbers(parsed),
        dt.datetime.now(dt.UTC),
        request.state.client,
        [",".join(fields) for fields in unknown],
    )
    return JSONResponse(
        {
            "model_version": version,
            "predictions": [
                {"delay_probability": float(p), "model_version": version, "unknown_fields": list(fields)}
                for p, fields in zip(probabilities, unknown, strict=True)
            ],
        }
    )


def unseen_errors(flights: list, unknown: list[tuple[str, ...]], served: Served) -> list[dict[str, str]]:
    """One error per value the model would have guessed on, naming the flight and the field."""
    version = served.version.version
    return [
        {
            "field": f"flights[{i}].{name}",
            "message": f"{getattr(flight, name)!r} is not a value model version {version} knows",
            "type": "unknown_value",
        }
        for i, (flight, fields) in enumerate(zip(flights, unknown, strict=True))
        for name in fields
    ]


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
    if state.store.problem:
        body["reason"] = state.store.problem
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
    status, body = app_state(request.app).store.readiness()
    return JSONResponse(body, status_code=status)


@endpoint("openapi")
async def openapi(request: Request) -> Response:
    return JSONResponse(app_state(request.app).openapi)


def server_error() -> JSONResponse:
    return error(500, "the server failed to answer; its log has the request id")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405 (and any HTTPException) in JSON, naming what was wrong."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no route {request.url.path}"
        errors = [{"field": "path", "message": message, "type": "not_found"}]
    elif status == 405:
        message = f"{request.url.path} does not take {request.method}"
        errors = [{"field": "method", "message": message, "type": "method_not_allowed"}]
    else:
        message, errors = exc.detail, [{"field": "request", "message": exc.detail, "type": "http_error"}]
    return error(status, message, errors, **(exc.headers or {}))


async def unhandled(request: Request, exc: Exception) -> Response:
    """What escaped every endpoint (a bug in the middleware or the routing): JSON, with the request id.
    Starlette re-raises it after this answer, so uvicorn logs its traceback."""
    response = server_error()
    response.headers["X-Request-Id"] = request_id(request.scope)
    return response


EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: unhandled}


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


async def poll(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.config.poll_seconds)
        await run_in_threadpool(reload, state, "poll")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state = app_state(app)
    await run_in_threadpool(reload, state, "start")
    state.prediction_log.start()
    state.shadow.start()
    task = asyncio.create_task(poll(state)) if state.config.poll_seconds > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(state.shadow.close)
        await run_in_threadpool(state.prediction_log.close)


def create_app(
    config: ServingConfig,
    store: ModelStore | None = None,
    prediction_log: PredictionLog | None = None,
    tokens: Tokens | None = None,
) -> Starlette:
    """The API; its metrics are served by `create_metrics_app(app)`. Raises ConfigError when a tokens
    file is not usable."""
    tokens = tokens or Tokens.from_config(config)
    store = store or ModelStore(config)
    metrics = ServingMetrics()
    prediction_log = prediction_log or PredictionLog.for_config(config)
    prediction_log.register(metrics.registry)
    tokens.register(metrics.registry)
    shadow = ShadowScorer(prediction_log)
    shadow.register(metrics.registry)
    metrics.model_version.set(0)
    app = Starlette(
        routes=[
            Route("/v1/predict", predict, methods=["POST"]),
            Route("/v1/model", model, methods=["GET"]),
            Route("/v1/admin/reload", admin_reload, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(
                ConcurrencyLimitMiddleware,
                limit=config.max_concurrency,
                refused=metrics.refused,
                in_flight=metrics.in_flight,
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.serving = AppState(
        config, store, metrics, prediction_log, tokens, openapi_document(config), shadow
    )
    return app


def create_metrics_app(app: Starlette) -> Starlette:
    """`/metrics` of the API `app` (Prometheus text), for the metrics port; 404 and 405 in JSON here too."""
    metrics_app = Starlette(
        routes=[Route("/metrics", prometheus, methods=["GET"])],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    metrics_app.state.registry = app_state(app).metrics.registry
    return metrics_app
