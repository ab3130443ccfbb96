"""uvicorn's httptools protocol with the two guards uvicorn lacks: a header size limit and a header timeout.

uvicorn (0.54) runs httptools when it is installed (`uvicorn[standard]`), and for httptools it
has no limit on the size of a request's headers (`h11_max_incomplete_event_size` applies to
the h11 protocol only) and no timeout for reading them: `timeout_keep_alive` is armed only
after a response, and the first byte of the next request disarms it, so a connection that
sends part of its headers, or nothing at all, is held until the client leaves. Here:

- the request line and headers may take at most `max_header_bytes`: more is answered 431,
  counted as the bytes arrive, so a client never makes the server buffer much more than that
  (one socket read more, 256 KiB, where a pipelined request begins in the read that ended the
  one before it);
- they must be complete within `header_timeout` of the connection's start, or of the
  request's first byte on a kept-alive connection: a connection that sent nothing is closed,
  one that sent part of a request is answered 408;
- uvicorn's plain-text 400 for a request that is not HTTP is JSON like every other answer.

Every refusal is reported to `on_refusal` with its reason, for the metrics.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Refusal = Callable[[str], None]
LINGER_SECONDS = 2.0
"""How long a refused connection is kept to let its answer reach the client (see `_refuse`)."""


class _HeadersTooLargeError(Exception):
    """Raised in a parser callback: httptools stops and uvicorn answers with `send_400_response`."""


def raw_json_response(status: int, reason: str, detail: str, field: str, kind: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for refusals made before the app runs."""
    body = json.dumps(
        {"detail": detail, "errors": [{"field": field, "message": detail, "type": kind}]},
        separators=(",", ":"),
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ServingProtocol(HttpToolsProtocol):
    """Configured by `protocol_class`; one instance per connection, as uvicorn makes them."""

    max_header_bytes: ClassVar[int] = 16 * 1024
    header_timeout: ClassVar[float] = 10.0
    on_refusal: ClassVar[Refusal] = staticmethod(lambda reason: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = False
        self._in_body = False
        self._ended_in_read = False
        self._read_bytes = 0
        self._parsed_bytes = 0
        self._headers_too_large = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:  # refused: the parser has stopped, and what still comes is dropped
            return
        # Two counts of a request's header bytes, each exact or short, never over: the reads that
        # are all header bytes (they begin with headers incomplete or between requests, end with
        # headers incomplete, and no request ended in them), and what the parser handed over (the
        # URL, each header once complete). The reads bound what httptools buffers of a header still
        # incomplete; the parser's count covers headers that begin in a read after another request.
        whole = self._reading_headers or not self._in_body
        self._ended_in_read = False
        super().data_received(data)
        if whole and self._reading_headers and not self._ended_in_read and not self._discarding:
            self._read_bytes += len(data)
            if self._read_bytes > self.max_header_bytes:
                self._headers_too_large = True
                self.send_400_response("")

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._read_bytes = self._parsed_bytes = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count(len(name) + len(value) + 4)  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._in_body = True
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._ended_in_read = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse, and this class's 431: JSON, then close."""
        if self.transport.is_closing() or self._discarding:
            return
        if self._headers_too_large:
            limit = self.max_header_bytes
            self.on_refusal("headers_too_large")
            answer = raw_json_response(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers exceed {limit} bytes",
                "headers",
                "headers_too_large",
            )
        else:
            self.on_refusal("invalid_http")
            answer = raw_json_response(400, "Bad Request", "invalid HTTP request", "request", "invalid_http")
        self._refuse(answer)

    def _refuse(self, answer: bytes) -> None:
        """Send `answer` and stop reading requests; close once the client has read it.

        Closing at once with the client's bytes unread makes the kernel send a reset, which can
        destroy the answer before the client reads it; so the write side is shut, what still
        arrives is discarded, and the connection is closed when the client closes its side or
        after `LINGER_SECONDS` (nginx's lingering close).
        """
        self._discarding = True
        self._disarm_header_timer()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _count(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_bytes:
            self._headers_too_large = True
            raise _HeadersTooLargeError

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout_expired)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        self.on_refusal("header_timeout")
        if not self._reading_headers:  # not a byte of a request: nothing to answer
            self.transport.close()
            return
        seconds = f"{self.header_timeout:g}"
        self._refuse(
            raw_json_response(
                408,
                "Request Timeout",
                f"the request headers did not arrive within {seconds} s",
                "headers",
                "header_timeout",
            )
        )


def protocol_class(
    max_header_bytes: int, header_timeout: float, on_refusal: Refusal
) -> type[ServingProtocol]:
    """The protocol uvicorn makes per connection, with this server's limits (uvicorn's `http=`)."""
    return type(
        "ServingProtocol",
        (ServingProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout": header_timeout,
            "on_refusal": staticmethod(on_refusal),
        },
    )
