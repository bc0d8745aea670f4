"""API keys: what a key may use and how much."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiKey:
    """One key's record, as the gateway sees it once the key was verified. The secret
    itself is never kept: only its digest, in the key store."""

    id: str
    """Public id, also the secret's prefix, for lookup and for logs (``dsk_…``)."""
    name: str
    models: tuple[str, ...] = ()
    """Models it may use; empty: every model."""
    rpm: int | None = None
    """Requests per minute; None: no limit."""
    tpm: int | None = None
    """Tokens per minute (prompt + completion); None: no limit."""
    max_concurrent: int | None = None
    """Requests in flight at once; None: no limit."""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
