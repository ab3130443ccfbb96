"""`python -m serving`: the model server under uvicorn, configured by environment variables.

Listens on PLATFORM_SERVING_HOST:PLATFORM_SERVING_PORT (default 127.0.0.1:8080) for the API and
on PLATFORM_SERVING_METRICS_HOST:PLATFORM_SERVING_METRICS_PORT (default 127.0.0.1:9464) for
`/metrics`: two uvicorn servers on one event loop, so a NetworkPolicy can tell the ports apart
and the metrics need no second process. See `serving.config` for the other settings. Exits with
status 2 when a setting (or a tokens file) is wrong, or the metrics port is taken.

The API's signals (SIGTERM, SIGINT) are the API server's: it drains its requests and runs the
app's shutdown (the prediction log's flush), then the metrics server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from serving.app import app_state, create_app, create_metrics_app
from serving.config import ConfigError, ServingConfig
from serving.protocol import protocol_class

log = logging.getLogger("serving")


class SideServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to the main one and is stopped by it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def servers(config: ServingConfig, app: Starlette) -> tuple[uvicorn.Server, uvicorn.Server]:
    """The API's server and the metrics' server, with this server's HTTP limits on both."""
    refused = app_state(app).metrics.refused
    http = protocol_class(
        config.max_header_bytes, config.header_timeout_seconds, lambda reason: refused.labels(reason).inc()
    )
    # No access log: a line per request costs more than scoring a flight, and every answer is
    # already counted in the metrics and recorded in the prediction log.
    common = {"http": http, "log_level": "info", "access_log": False, "ws": "none"}
    api = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            timeout_keep_alive=config.keep_alive_seconds,
            timeout_graceful_shutdown=config.graceful_shutdown_seconds,
            **common,
        )
    )
    metrics = SideServer(
        uvicorn.Config(
            create_metrics_app(app),
            host=config.metrics_host,
            port=config.metrics_port,
            lifespan="off",
            timeout_keep_alive=config.keep_alive_seconds,
            **common,
        )
    )
    return api, metrics


def metrics_socket(config: ServingConfig) -> socket.socket:
    """The metrics port, bound before anything starts, so a port in use stops the server at once."""
    family = socket.AF_INET6 if ":" in config.metrics_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.metrics_host, config.metrics_port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve(api: uvicorn.Server, metrics: uvicorn.Server, sock: socket.socket) -> None:
    """Metrics first (they answer while the model loads), then the API until it is told to stop."""
    host, port = sock.getsockname()[:2]
    log.info("metrics on http://%s:%s/metrics", host, port)
    side = asyncio.create_task(metrics.serve(sockets=[sock]))
    try:
        await api.serve()
    finally:
        metrics.should_exit = True
        await side


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServingConfig.from_env()
        app = create_app(config)
    except ConfigError as exc:
        print(f"serving: error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = metrics_socket(config)
    except OSError as exc:
        where = f"{config.metrics_host}:{config.metrics_port}"
        print(f"serving: error: cannot listen for metrics on {where}: {exc.strerror}", file=sys.stderr)
        return 2
    api, metrics = servers(config, app)
    with asyncio.Runner(loop_factory=api.config.get_loop_factory()) as runner:
        runner.run(serve(api, metrics, sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
