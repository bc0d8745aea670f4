"""Verified keys remembered for a few seconds, so a request costs a dictionary lookup, not
a database query; the TTL bounds how long a revoke on another replica takes to apply.

Keys in use are kept fresh off the request path: every half TTL, ``refresh`` checks every
key used in the last ``KEEP_WARM_S`` against the store in one query (the gateway runs it in
the background), so a key in use never misses the cache. A miss costs a worker-thread
hand-off, and while the engine's threads hold every core that hand-off waits for one: at 16
streams on two cores, requests whose key had expired between two bursts spent 5–10 ms
there. A remembered answer is still never older than the TTL."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from dsdeploy.security.keys import ApiKey, KeyStore, digest, parse_key

MAX_ENTRIES = 10_000
"""Only keys that verified are remembered, so this bounds memory, not what an attacker sends."""
KEEP_WARM_S = 600.0
"""How long after its last use a key is still kept fresh."""


@dataclass
class Remembered:
    """A verified key, its secret's digest (to notice a rotation), when the store last
    vouched for it, and when a request last used it."""

    key: ApiKey
    secret_digest: bytes
    asked_at: float
    used_at: float


class KeyCache:
    """``cached`` answers from memory (or None: ask ``verify``, which queries the store and
    remembers a match). Entries are keyed by the presented key's SHA-256, not the key."""

    def __init__(
        self,
        store: KeyStore,
        ttl_s: float,
        *,
        require: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.require = require
        self.clock = clock
        self._keys: dict[bytes, Remembered] = {}
        self._enforced: tuple[bool, float] | None = None
        self._used_at = -KEEP_WARM_S

    def cached(self, presented: str) -> ApiKey | None:
        found = self._keys.get(digest(presented))
        if found is None:
            return None
        now = self.clock()
        if now >= found.asked_at + self.ttl_s or not found.key.active(time.time()):
            return None
        found.used_at = self._used_at = now
        return found.key

    def verify(self, presented: str) -> ApiKey | None:
        """Blocking (a database query): the gateway runs it in a worker thread."""
        key = self.store.verify(presented)
        parsed = parse_key(presented)
        if key is None or parsed is None:  # verify parses it too: None only with key None
            return None
        if len(self._keys) >= MAX_ENTRIES:
            self._drop_stale()
        now = self.clock()
        self._keys[digest(presented)] = Remembered(key, digest(parsed[1]), now, now)
        self._used_at = now
        return key

    def refresh(self) -> None:
        """Blocking: checks the keys used lately against the store (one query), renewing
        those still valid (with their current limits) and forgetting the others, and asks
        again whether keys are required. Nothing to do once nothing was used lately."""
        now = self.clock()
        if now - self._used_at > KEEP_WARM_S:
            return
        if self._enforced is not None:
            self.refresh_enforced()
        warm = {
            found: remembered
            for found, remembered in list(self._keys.items())
            if now - remembered.used_at <= KEEP_WARM_S
        }
        current = self.store.current({remembered.key.id for remembered in warm.values()})
        for found, remembered in warm.items():
            key, secret_digest = current.get(remembered.key.id, (None, b""))
            if key is None or not hmac.compare_digest(secret_digest, remembered.secret_digest):
                self._keys.pop(found, None)  # revoked, expired, rotated or deleted
            else:
                remembered.key, remembered.asked_at = key, now

    def _drop_stale(self) -> None:
        now = self.clock()
        self._keys = {k: v for k, v in self._keys.items() if v.asked_at + self.ttl_s > now}
        if len(self._keys) >= MAX_ENTRIES:
            self._keys.clear()

    def enforced_cached(self) -> bool | None:
        """Whether requests need a key, from memory; None when ``refresh_enforced`` must ask
        the store (whether it has an active key)."""
        if self.require:
            return True
        now = self.clock()
        if self._enforced is None or now >= self._enforced[1]:
            return None
        self._used_at = now
        return self._enforced[0]

    def refresh_enforced(self) -> bool:
        """Blocking: whether the store has an active key (the first key turns auth on)."""
        enforced = self.require or self.store.has_active_keys()
        self._enforced = (enforced, self.clock() + self.ttl_s)
        return enforced
