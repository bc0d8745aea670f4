"""Failed authentication attempts counted per client address, so that guessing keys stops.

A key's secret is 256 random bits and cannot be guessed, but every guess still costs the
gateway a key lookup (a database query on a cache miss), and a weak metrics token can be
guessed. After ``failures`` wrong credentials from one address within ``window_s``, that
address is refused before any lookup until its oldest failure leaves the window.

Failures are a moving window in the ``limits`` storage the per-key limits use: memory, or
Redis when replicas share it, so an attacker cannot spread guesses over the replicas.
Nothing here knows HTTP.
"""

from __future__ import annotations

import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from dsdeploy.security.limits import store_errors
from dsdeploy.settings import SecuritySettings

NAMESPACE = "dsdeploy/auth-failures"


class FailedAuthThrottle:
    """Counts an address's failed attempts and says how long it must wait once it had too
    many. Raises ``LimitsUnavailable`` when the storage does not answer."""

    def __init__(self, storage: Storage, failures: int, window_s: int) -> None:
        self.item = RateLimitItemPerSecond(failures, window_s)
        self.window = MovingWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, storage: Storage, security: SecuritySettings) -> FailedAuthThrottle:
        return cls(storage, security.auth_failures, security.auth_failure_window_s)

    async def blocked(self, address: str) -> float | None:
        """Seconds until ``address`` may try again; None while it may (one read, or two
        when it is blocked)."""
        with store_errors():
            if await self.window.test(self.item, NAMESPACE, address):
                return None
            stats = await self.window.get_window_stats(self.item, NAMESPACE, address)
        return max(1.0, stats.reset_time - time.time())

    async def failed(self, address: str) -> None:
        with store_errors():
            await self.window.hit(self.item, NAMESPACE, address)
