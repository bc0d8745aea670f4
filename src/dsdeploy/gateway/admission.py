"""Reading a request without trusting it: a capped body, and a client that may leave.

The body is read chunk by chunk as uvicorn receives it (it stops reading the socket while
64 KiB wait unread), so a body past the cap is refused with a 413 after at most the cap was
held, and before any byte goes to an engine. A declared ``content-length`` past the cap is
refused before a byte is read. A body still arriving ``body_timeout_s`` after its headers
(a client trickling bytes to hold a connection) is answered 408.

A client that disconnects while the engine works must not leave the engine working: the
engine only learns it when its own connection closes, so the wait for the engine is
watched and cancelled when the client's ``http.disconnect`` arrives. A stop's drain that
runs out (``gateway.drain``) cancels the wait the same way, and the client gets a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from dsdeploy.gateway.drain import shutting_down
from dsdeploy.gateway.errors import ApiError

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than this server's limit of {limit:,} bytes",
        code="request_too_large",
    )


def too_slow(timeout_s: float) -> ApiError:
    return ApiError(
        408,
        f"the request body did not arrive within this server's limit of {timeout_s:g} s",
        code="request_timeout",
    )


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, or a 413 as soon as it passes ``limit`` bytes, or a 408 when it is
    not all there ``timeout_s`` after the headers."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []

    async def collect() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)

    try:
        # A cancel scope, not wait_for: that runs the read as a task of its own, two trips
        # through the event loop, each a wait for a core while the engine holds them all.
        with anyio.fail_after(timeout_s):
            await collect()
    except ClientDisconnect:
        raise ClientGone from None
    except TimeoutError:
        raise too_slow(timeout_s) from None
    return b"".join(chunks)


async def disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the body was read before, so nothing else comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(
    receive: Receive, work: Awaitable[T], cutoff: asyncio.Future[None]
) -> T:
    """``work``'s result, or ``ClientGone`` once the client disconnects first, or a 503
    once the drain's ``cutoff`` comes first; ``work`` is then cancelled, which closes its
    engine connection."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected(receive))
    try:
        done, _ = await asyncio.wait((task, watcher, cutoff), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if watcher in done:
        raise ClientGone
    raise shutting_down()
