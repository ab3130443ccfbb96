"""Local helper processes and the one way the dev tooling waits for them: on a condition, with a deadline.

Shared by the Dagster services harness, the throwaway PostgreSQL and S3 servers and the
serving benchmarks.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

# Deadlines of the harness's waits, sized for a busy 2-core CI machine (`pytest -n auto`
# next to another job). A wait ends as soon as its condition holds, so a generous deadline
# costs nothing on a good day; pytest-timeout (600 s a test) bounds the whole test.
START_TIMEOUT = 300.0  # the webserver serving the loaded code location; the daemon heartbeating
POLL_INTERVAL = 0.5

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """A condition did not hold by its deadline; the message says what and what was seen last."""


def wait_until(
    observe: Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    what: str,
    timeout: float,
    interval: float = POLL_INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (),
    show: Callable[[T], str] = repr,
) -> T:
    """Call `observe()` every `interval` seconds until `done(state)` holds, and return that state.

    The one way the harness and the end-to-end tests wait: on a condition, never for a fixed
    time. An exception of a `retry_on` type from `observe` counts as "not yet" (a busy server
    answering late once); any other propagates at once (a service that exited). Past
    `timeout` seconds, WaitTimeoutError names `what` was awaited and the state (or the error)
    observed last, through `show`.
    """
    deadline = time.monotonic() + timeout
    last = "nothing"
    while True:
        try:
            state = observe()
        except retry_on as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if done(state):
                return state
            last = show(state)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if len(last) > 4000:
                last = last[:4000] + f"... ({len(last) - 4000} more characters)"
            raise WaitTimeoutError(f"waited {timeout:g}s for {what}; last observed: {last}")
        time.sleep(min(interval, remaining))


def terminate(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
