"""How much one API key may use: requests and tokens per minute, and requests at once.

Counts live in a ``limits`` storage: this process's memory by default, Redis when several
gateway replicas must share them (one URL, ``redis://…``). Requests per minute use the
moving window: it keeps one timestamp per admitted request and counts those of the last
60 s exactly, so a 60 rpm key hit by a burst admits exactly 60 wherever the burst falls
(a fixed window admits up to 120 across a minute boundary, and the sliding-window counter
only estimates the previous minute's share).

Tokens per minute cannot be a moving window: it would keep one entry per token. They are a
counter per key and clock-aligned minute, so that a request can *reserve* its worst case
(``max_tokens`` plus an estimate of the prompt) before the engine starts, and *settle* it
with ``incr`` by the difference once the engine reports what it used. A settlement for a
minute already over lands on that minute's dead counter, never on the current one.

Requests at once are leases (see ``security.slots``). Nothing here knows HTTP.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from dsdeploy.security.memory_store import LoopPrunedMemoryStorage
from dsdeploy.security.slots import Lease, SlotStore, slot_store

WINDOW_S = 60
"""Both per-minute limits count over 60 seconds."""

Kind = Literal["requests", "tokens", "concurrent"]


@dataclass(frozen=True)
class Window:
    """Where one per-minute limit stands: for the ``x-ratelimit-*`` headers."""

    limit: int
    remaining: int
    reset_s: float
    """Seconds until the used amount drops (a request's entry, or the minute ends)."""


class LimitExceeded(Exception):
    """A key asked for more than its limit allows now."""

    def __init__(self, kind: Kind, message: str, retry_after_s: float, window: Window | None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.window = window


class LimitsUnavailable(Exception):
    """The shared store of counts does not answer: requests are refused, not let through
    uncounted."""


STORE_ERRORS = (StorageError, RedisError, OSError)
UNAVAILABLE = "the rate limit store is not answering; retry shortly"


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    try:
        yield
    except STORE_ERRORS:
        raise LimitsUnavailable(UNAVAILABLE) from None


@dataclass(frozen=True)
class Reservation:
    """Tokens counted against a key before its request runs, until they are settled."""

    key_id: str
    minute: int
    tokens: int
    window: Window


def open_storage(redis_url: str | None, pool: ConnectionPool | None = None) -> Storage:
    """Redis (shared by replicas) when a URL is given, this process's memory otherwise
    (pruned on the event loop: see ``security.memory_store``).
    Redis is reached with redis-py, the client ``limits[redis]`` installs, through ``pool``
    when given: its owner can then close the connections (the storage has no close)."""
    if redis_url is None:
        return LoopPrunedMemoryStorage()
    options: dict[str, Any] = {} if pool is None else {"connection_pool": pool}
    storage = storage_from_string(
        "async+" + redis_url, wrap_exceptions=True, implementation="redispy", **options
    )
    assert isinstance(storage, Storage)
    return storage


class Limiter:
    """Per-key requests per minute, tokens per minute and requests at once."""

    def __init__(
        self, storage: Storage, slots: SlotStore, pool: ConnectionPool | None = None
    ) -> None:
        self.storage = storage
        """Also where failed authentications are counted (``security.auth_throttle``)."""
        self.requests = MovingWindowRateLimiter(storage)
        self.slots = slots
        self.pool = pool

    @classmethod
    def from_url(cls, redis_url: str | None, *, lease_s: float) -> Limiter:
        pool = None if redis_url is None else ConnectionPool.from_url(redis_url)
        slots = slot_store(redis_url, lease_s=lease_s)
        return cls(open_storage(redis_url, pool), slots, pool)

    async def aclose(self) -> None:
        await self.slots.aclose()
        if self.pool is not None:
            await self.pool.disconnect()

    async def admit_request(self, key_id: str, rpm: int) -> Window:
        """Counts one request and says where the key's minute stands, or raises
        ``LimitExceeded`` when the last minute had ``rpm`` (two round trips: the moving
        window's hit says only whether it fits)."""
        item = RateLimitItemPerMinute(rpm)
        with store_errors():
            admitted = await self.requests.hit(item, "rpm", key_id)
            stats = await self.requests.get_window_stats(item, "rpm", key_id)
        window = Window(rpm, stats.remaining, max(0.0, stats.reset_time - time.time()))
        if admitted:
            return window
        message = f"this API key may send {rpm} requests per minute"
        raise LimitExceeded("requests", message, max(window.reset_s, 1.0), window)

    def _tokens_key(self, key_id: str, minute: int) -> str:
        return f"dsdeploy/tpm/{key_id}/{minute}"

    async def reserve_tokens(self, key_id: str, tpm: int, tokens: int) -> Reservation:
        """Counts ``tokens`` against this minute, or raises ``LimitExceeded`` (and counts
        nothing) when they do not fit in what is left of it."""
        now = time.time()
        minute = int(now // WINDOW_S)
        reset_s = (minute + 1) * WINDOW_S - now
        key = self._tokens_key(key_id, minute)
        with store_errors():
            used = await self.storage.incr(key, WINDOW_S + 1, tokens)
            if used > tpm:
                await self.storage.incr(key, WINDOW_S + 1, -tokens)
        if used > tpm:
            left = max(0, tpm - (used - tokens))
            window = Window(tpm, left, reset_s)
            message = (
                f"this API key may use {tpm} tokens per minute; this request may use "
                f"{tokens} (its max_tokens and prompt) and {left} are left this minute"
            )
            raise LimitExceeded("tokens", message, reset_s, window)
        return Reservation(key_id, minute, tokens, Window(tpm, tpm - used, reset_s))

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Counts what the request really used instead of what it reserved: the unused
        part is given back (or the overrun added) to the reservation's minute."""
        difference = used - reservation.tokens
        if difference:
            key = self._tokens_key(reservation.key_id, reservation.minute)
            with store_errors():
                await self.storage.incr(key, WINDOW_S + 1, difference)

    async def acquire_slot(self, key_id: str, max_concurrent: int) -> Lease:
        with store_errors():
            lease = await self.slots.acquire(f"dsdeploy/concurrent/{key_id}", max_concurrent)
        if lease is None:
            message = f"this API key may have {max_concurrent} requests in flight at once"
            raise LimitExceeded("concurrent", message, 1.0, None)
        return lease

    async def release_slot(self, lease: Lease) -> None:
        with store_errors():
            await self.slots.release(lease)


class GatewayQueue:
    """Bounds the requests this gateway holds at once (waiting for an engine or in
    flight), whichever key they carry: beyond it a client is told to come back rather
    than queue without end. Kept in this process: each replica bounds its own queue."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.held = 0

    def try_enter(self) -> bool:
        if self.held >= self.bound:
            return False
        self.held += 1
        return True

    def leave(self) -> None:
        self.held -= 1
