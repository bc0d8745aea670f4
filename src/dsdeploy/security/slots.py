"""Requests in flight per key, counted where every replica sees them, and never leaked.

A counter that is incremented on admission and decremented on release leaks a slot for
good when the replica holding it dies between the two (``limits`` counters expire only as
a whole, from their first increment, so they cannot age out one holder). Here each
request in flight is a *lease*: a member of a Redis sorted set scored with its deadline.
Taking a slot drops expired leases, counts the rest and adds one, in one Lua script (one
round trip, atomic across replicas, on the Redis server's clock so replicas' clocks need
not agree). The replica holding leases renews them every third of ``lease_s``; a replica
that dies stops renewing, and its slots come back ``lease_s`` later at most.

In one process (no Redis) a dict of counts is exact: its slots die with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import Protocol

ACQUIRE = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_s)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_s + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""
"""KEYS: the key's lease set; ARGV: limit, lease seconds, lease id. 1 when taken."""

RENEW = """
local now = redis.call('TIME')
local deadline = tonumber(now[1]) + tonumber(now[2]) / 1e6 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[i - 1], 'XX', deadline, ARGV[i])
  redis.call('EXPIRE', KEYS[i - 1], math.ceil(tonumber(ARGV[1])) + 1)
end
return 1
"""
"""KEYS: lease sets; ARGV: lease seconds, then one lease id per key. Existing leases only."""


@dataclass(frozen=True)
class Lease:
    """One request's slot: the key's lease set and the lease's own id."""

    key: str
    id: str


class SlotStore(Protocol):
    async def acquire(self, key: str, limit: int) -> Lease | None:
        """A lease, or None when ``limit`` leases of ``key`` are held."""
        ...

    async def release(self, lease: Lease) -> None: ...

    async def aclose(self) -> None: ...


class MemorySlots:
    """Slots of one gateway process."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}

    async def acquire(self, key: str, limit: int) -> Lease | None:
        count = self.held.get(key, 0)
        if count >= limit:
            return None
        self.held[key] = count + 1
        return Lease(key, "")

    async def release(self, lease: Lease) -> None:
        count = self.held.pop(lease.key, 0) - 1
        if count > 0:
            self.held[lease.key] = count

    async def aclose(self) -> None:
        self.held.clear()


class RedisSlots:
    """Slots shared by every replica using the same Redis."""

    def __init__(self, url: str, lease_s: float) -> None:
        from redis.asyncio import Redis

        self.redis = Redis.from_url(url)
        self.lease_s = lease_s
        self.acquire_script = self.redis.register_script(ACQUIRE)
        self.renew_script = self.redis.register_script(RENEW)
        self.held: set[Lease] = set()
        self.renewer: asyncio.Task[None] | None = None

    async def acquire(self, key: str, limit: int) -> Lease | None:
        lease = Lease(key, secrets.token_hex(8))
        if not await self.acquire_script([key], [limit, self.lease_s, lease.id]):
            return None
        self.held.add(lease)
        if self.renewer is None or self.renewer.done():
            self.renewer = asyncio.create_task(self._renew(), name="slot-lease-renewer")
        return lease

    async def release(self, lease: Lease) -> None:
        self.held.discard(lease)
        await self.redis.zrem(lease.key, lease.id)

    async def _renew(self) -> None:
        while self.held:
            await asyncio.sleep(self.lease_s / 3)
            leases = list(self.held)
            if leases:
                keys = [lease.key for lease in leases]
                with contextlib.suppress(Exception):  # retried at the next turn
                    await self.renew_script(keys, [self.lease_s, *(x.id for x in leases)])

    async def aclose(self) -> None:
        if self.renewer is not None:
            self.renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.renewer
        await self.redis.aclose()


def slot_store(redis_url: str | None, *, lease_s: float) -> SlotStore:
    return MemorySlots() if redis_url is None else RedisSlots(redis_url, lease_s)
