"""Verified keys remembered for a few seconds, so a request costs a dictionary lookup, not
a database query; the TTL bounds how long a revoke on another replica takes to apply."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from dsdeploy.security.keys import ApiKey, KeyStore

MAX_ENTRIES = 10_000
"""Only keys that verified are remembered, so this bounds memory, not what an attacker sends."""


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
        self._keys: dict[bytes, tuple[ApiKey, float]] = {}
        self._enforced: tuple[bool, float] | None = None

    def cached(self, presented: str) -> ApiKey | None:
        found = self._keys.get(hashlib.sha256(presented.encode()).digest())
        if found is None:
            return None
        key, fresh_until = found
        if self.clock() >= fresh_until or not key.active(time.time()):
            return None
        return key

    def verify(self, presented: str) -> ApiKey | None:
        """Blocking (a database query): the gateway runs it in a worker thread."""
        key = self.store.verify(presented)
        if key is not None:
            if len(self._keys) >= MAX_ENTRIES:
                self._drop_stale()
            self._keys[hashlib.sha256(presented.encode()).digest()] = (
                key,
                self.clock() + self.ttl_s,
            )
        return key

    def _drop_stale(self) -> None:
        now = self.clock()
        self._keys = {k: v for k, v in self._keys.items() if v[1] > now}
        if len(self._keys) >= MAX_ENTRIES:
            self._keys.clear()

    def enforced_cached(self) -> bool | None:
        """Whether requests need a key, from memory; None when ``refresh_enforced`` must ask
        the store (whether it has an active key)."""
        if self.require:
            return True
        if self._enforced is None or self.clock() >= self._enforced[1]:
            return None
        return self._enforced[0]

    def refresh_enforced(self) -> bool:
        """Blocking: whether the store has an active key (the first key turns auth on)."""
        enforced = self.require or self.store.has_active_keys()
        self._enforced = (enforced, self.clock() + self.ttl_s)
        return enforced
