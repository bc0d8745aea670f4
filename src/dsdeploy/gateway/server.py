"""The HTTP server in front of the app: uvicorn, with bounds a public listener needs.

uvicorn's httptools protocol (C parser; the pure-Python h11 one cost 6–13 µs more CPU per
streamed chunk here) has three gaps this subclass closes:

- no bound on connections: ``limit_concurrency`` only answers *requests* with 503, and
  counts the asking connection itself, while connections that send nothing stay open and
  use file descriptors. Here connection ``max_connections + 1`` is answered 503 and closed.
- no timeout before the first request: the keep-alive timer starts only after a response,
  so a client that connects and sends nothing (or headers a byte at a time) is held
  forever. Here the request line and headers must arrive within ``idle_timeout_s``.
- no bound on header size (50 MB of headers were held in memory). Here more than
  ``max_header_bytes`` before the headers end is answered 431 and closed.

A stop signal drains (``GatewayServer``, with the app's ``gateway.drain.Drain``): uvicorn
stops accepting and waits for each open answer, streams included, to end; the drain's cut
ends those still open ``drain_timeout_s`` after the signal, and uvicorn's own bound
(``timeout_graceful_shutdown``) backs it a second later.

A refused connection gets its answer, then a half-close: the client reads the answer and
closes, so its TCP stack does not reset the connection (and drop the answer) because
bytes it sent were left unread. For the same reason a request answered before its body
arrived (a 413) keeps being read, its bytes dropped, for up to ``LINGER_S``.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dsdeploy.gateway.drain import CUT_GRACE_S, Drain
from dsdeploy.gateway.errors import OPENAI, ApiError
from dsdeploy.settings import GatewaySettings, SecuritySettings

LINGER_S = 10.0
"""How long the rest of a refused body is read and dropped: 1.25 GB at 1 Gbit/s."""


def raw_answer(status_line: bytes, error: ApiError) -> bytes:
    body = json.dumps(OPENAI.body(error, None).model_dump()).encode()
    head = b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
    return b"HTTP/1.1 " + status_line + b"\r\n" + head % len(body) + body


TOO_MANY_CONNECTIONS = raw_answer(
    b"503 Service Unavailable",
    ApiError(503, "the server has too many connections open; retry shortly", code="busy"),
)
HEADERS_TOO_LARGE = raw_answer(
    b"431 Request Header Fields Too Large",
    ApiError(431, "the request headers are larger than this server's limit"),
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection bound, a header deadline and a
    header size bound (the class is made per server with its limits)."""

    max_connections: ClassVar[int]
    max_header_bytes: ClassVar[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = False
        self.in_headers = True
        self.header_bytes = 0
        self.headers_completed = 0
        self.deadline: asyncio.TimerHandle | None = None
        self.linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.refuse(TOO_MANY_CONNECTIONS)
        else:
            self.arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.deadline, self.linger):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # read and dropped until the client closes
        was_in_headers, completed = self.in_headers, self.headers_completed
        super().data_received(data)
        if was_in_headers and self.headers_completed == completed:  # all of it was headers
            self.header_bytes += len(data)
            if self.header_bytes > self.max_header_bytes:
                self.refuse(HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm_deadline()

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.headers_completed += 1
        if self.deadline is not None:
            self.deadline.cancel()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_headers, self.header_bytes = True, 0
        if self.linger is not None:
            self.linger.cancel()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle.more_body and not self.transport.is_closing():
            self.linger = self.loop.call_later(LINGER_S, self.transport.close)

    def arm_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(self.timeout_keep_alive, self.transport.close)

    def refuse(self, answer: bytes) -> None:
        self.refused = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.arm_deadline()  # closed when the client closes, or at the deadline


def uvicorn_config(
    app: FastAPI, settings: GatewaySettings, security: SecuritySettings | None = None
) -> uvicorn.Config:
    """``security`` gives the TLS pair (checked first with ``tls.check_tls_files``).
    uvicorn's own X-Forwarded-For handling stays off: it trusts 127.0.0.1 by default, and
    the network guard decides the client address from ``trusted_proxies`` alone. Logging
    is configured by ``logs.configure_logging``, not by uvicorn, and uvicorn's access log is
    off: the gateway writes its own (see ``gateway.logs``)."""

    class LimitedHttpProtocol(GuardedHttpProtocol):
        max_connections = settings.max_connections
        max_header_bytes = settings.max_header_bytes

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=LimitedHttpProtocol,
        ws="none",  # the gateway serves no websockets
        timeout_keep_alive=settings.idle_timeout_s,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        # a backstop behind the drain's cut; uvicorn wants whole seconds
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s + CUT_GRACE_S),
        proxy_headers=False,
        ssl_certfile=None if security is None else security.tls_cert,
        ssl_keyfile=None if security is None else security.tls_key,
    )


class GatewayServer(uvicorn.Server):
    """uvicorn's server, its stop bounded by the app's drain.

    uvicorn installs its own SIGTERM/SIGINT handler while it serves (``handle_exit``, below)
    and, once it has shut down, raises the signal again for the handler it replaced. The
    first signal begins the drain; a second one cuts it at once (uvicorn's own answer to a
    second Ctrl-C, ``force_exit``, stops waiting but leaves the answers in flight unended
    and skips the app's shutdown)."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        again = self.drain.draining
        super().handle_exit(sig, frame)
        self.force_exit = False
        self.drain.begin()  # readiness and new requests see it at once
        if again and self.loop is not None:
            self.loop.call_soon_threadsafe(self.drain.cut)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.drain.arm()
        await super().shutdown(sockets)
