"""Failed authentication attempts counted per client address, so that guessing keys stops.

A key's secret is 256 random bits and cannot be guessed, but every guess still costs the
gateway a key lookup (a database query on a cache miss), and a weak metrics token can be
guessed. After ``failures`` wrong credentials from one address within ``window_s``, that
address is refused before any lookup until its oldest failure leaves the window.

Failures are a moving window in the ``limits`` storage the per-key limits use: memory, or
Redis when replicas share it, so an attacker cannot spread guesses over the replicas.
Every request that needs a key asks whether its address is blocked, so that question is
one storage call (the window's start and count together) without the strategy's wrappers.
Nothing here knows HTTP.
"""

from __future__ import annotations

import time
from typing import cast

from limits import RateLimitItemPerSecond
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from dsdeploy.security.limits import STORE_ERRORS, UNAVAILABLE, LimitsUnavailable, store_errors
from dsdeploy.settings import SecuritySettings

NAMESPACE = "dsdeploy/auth-failures"


class FailedAuthThrottle:
    """Counts an address's failed attempts and says how long it must wait once it had too
    many. Raises ``LimitsUnavailable`` when the storage does not answer."""

    def __init__(self, storage: Storage, failures: int, window_s: int) -> None:
        self.item = RateLimitItemPerSecond(failures, window_s)
        self.window = MovingWindowRateLimiter(storage)
        self.storage = cast(MovingWindowSupport, storage)

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
            raise LimitsUnavailable(UNAVAILABLE) from None
        if failures < item.amount:
            return None
        return max(1.0, oldest + item.get_expiry() - time.time())

    async def failed(self, address: str) -> None:
        with store_errors():
            await self.window.hit(self.item, NAMESPACE, address)
