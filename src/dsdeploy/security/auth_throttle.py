"""Failed authentication attempts counted per client address, so that guessing keys stops.

A key's secret is 256 random bits and cannot be guessed, but every guess still costs the
gateway a key lookup (a database query on a cache miss), and a weak metrics token can be
guessed. After ``failures`` wrong credentials from one address within ``window_s``, that
address is refused before any lookup until its oldest failure leaves the window.

Failures are a moving window in the ``limits`` storage the per-key limits use: memory, or
Redis when replicas share it, so an attacker cannot spread guesses over the replicas.
Every request that needs a key asks whether its address is blocked, so that question is
one storage call (the window's start and count together) without the strategy's wrappers.

A storage that does not answer stops the counting, not the API: the key check still runs
and a guess still fails, so refusing every client (as the limits must, or a key would pass
its limits uncounted) would turn a Redis outage into a gateway outage for nothing. It is
logged when it starts and when it ends. Nothing here knows HTTP.
"""

from __future__ import annotations

import logging
import time
from typing import cast

from limits import RateLimitItemPerSecond
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from dsdeploy.security.limits import STORE_ERRORS
from dsdeploy.settings import SecuritySettings

NAMESPACE = "dsdeploy/auth-failures"
log = logging.getLogger("dsdeploy.security")


class FailedAuthThrottle:
    """Counts an address's failed attempts and says how long it must wait once it had too
    many; while the storage does not answer, nobody is blocked."""

    def __init__(self, storage: Storage, failures: int, window_s: int) -> None:
        self.item = RateLimitItemPerSecond(failures, window_s)
        self.window = MovingWindowRateLimiter(storage)
        self.storage = cast(MovingWindowSupport, storage)
        self.answering = True

    @classmethod
    def from_settings(cls, storage: Storage, security: SecuritySettings) -> FailedAuthThrottle:
        return cls(storage, security.auth_failures, security.auth_failure_window_s)

    async def blocked(self, address: str) -> float | None:
        """Seconds until ``address`` may try again; None while it may."""
        item = self.item
        try:
            oldest, failures = await self.storage.get_moving_window(
                item.key_for(NAMESPACE, address), item.amount, item.get_expiry()
            )
        except STORE_ERRORS:
            self.not_answering()
            return None
        self.answers()
        if failures < item.amount:
            return None
        return max(1.0, oldest + item.get_expiry() - time.time())

    async def failed(self, address: str) -> None:
        try:
            await self.window.hit(self.item, NAMESPACE, address)
        except STORE_ERRORS:
            self.not_answering()

    def not_answering(self) -> None:
        if self.answering:
            self.answering = False
            log.error("failed authentications cannot be counted: the limits store is not answering")

    def answers(self) -> None:
        if not self.answering:
            self.answering = True
            log.warning("failed authentications are counted again")
