"""API keys: what a key may use and how much, and the store that issues and checks them.

A key reads ``dsk-<id>.<secret>``: ``id`` is public (10 hex digits; shown by ``keys list``,
written in logs, used to look the key up), ``secret`` is 32 random bytes, URL-safe base64.
Only the secret's SHA-256 digest is stored. A slow password hash (bcrypt, scrypt) exists to
make guessing a *low-entropy* password from its digest expensive; a 256-bit random secret
cannot be guessed from its digest at any hashing speed, so one fast hash is as safe here
and keeps a check at a few microseconds. Digests are compared with ``hmac.compare_digest``.

Rotation keeps the id, name and limits and replaces the secret: logs, limits and usage
stay attached to one id, and the old secret stops working at once (within the cache's TTL
on other replicas). A client that needs an overlap gets a second key, then the first is
revoked.

A key's scope is ``user`` (the APIs) or ``admin`` (the APIs and the operator routes such as
``/ps``). Databases made before scopes existed get the column on open, every existing key
a user key: nobody gains a right by an upgrade.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from dsdeploy.errors import ConfigError, KeyStoreUnavailable, UnknownKey
from dsdeploy.security.db import create_tables, open_database, sqlite_url
from dsdeploy.settings import SecuritySettings

PREFIX = "dsk-"
ID_HEX_DIGITS = 10
SECRET_BYTES = 32
MAX_KEY_CHARS = 200
"""Longer presented keys are refused before any hashing or lookup."""
SECRET_CHARS = 43
"""32 bytes in unpadded URL-safe base64."""
Scope = Literal["user", "admin"]
KEY_FORMAT = re.compile(rf"dsk-([0-9a-f]{{{ID_HEX_DIGITS}}})\.([A-Za-z0-9_-]{{{SECRET_CHARS}}})")


@dataclass(frozen=True)
class ApiKey:
    """One key's record, as the gateway sees it once the key was verified. The secret
    itself is never kept: only its digest, in the key store."""

    id: str
    """Public id, also in the key itself (``dsk-<id>.…``), for lookup and for logs."""
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
    scope: Scope = "user"
    """``admin`` keys may also use the operator routes (``/ps``, ``/metrics``)."""

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def state(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def active(self, now: float) -> bool:
        return self.state(now) == "active"

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_key(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, None for anything else (checked before hashing)."""
    if len(presented) > MAX_KEY_CHARS:
        return None
    found = KEY_FORMAT.fullmatch(presented)
    return (found[1], found[2]) if found else None


def public_id(presented: str) -> str | None:
    """The ``dsk-<id>`` part of a presented key when it has one: safe to repeat to the
    client and to log, unlike anything else it sent."""
    found = re.match(r"dsk-([0-9a-f]{1,10})", presented)
    return found[0] if found else None


UNAVAILABLE = "API keys cannot be checked now (the key database is not answering); retry shortly"
log = logging.getLogger("dsdeploy.security")

METADATA = MetaData()
KEYS = Table(
    "api_keys",
    METADATA,
    Column("id", String(16), primary_key=True),
    Column("digest", LargeBinary(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("models", Text, nullable=False),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("max_concurrent", Integer),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("scope", String(16), nullable=False, server_default="user"),
)
RECORD_COLUMNS = [column for column in KEYS.columns if column.name != "digest"]
BY_ID = select(KEYS).where(KEYS.c.id == bindparam("key_id"))
"""Built once: building a statement costs more than SQLite takes to run it."""


def record(row: Any) -> ApiKey:
    fields = dict(row._mapping)
    fields.pop("digest", None)
    return ApiKey(**{**fields, "models": tuple(json.loads(fields["models"]))})


def has_scope(engine: Engine) -> bool:
    return "scope" in {column["name"] for column in inspect(engine).get_columns("api_keys")}


def add_scope_column(engine: Engine) -> None:
    """Give a key table made before scopes existed its ``scope`` column (``create_all``
    makes missing tables, never missing columns); every existing key becomes a user key."""
    if has_scope(engine):
        return
    alter = "ALTER TABLE api_keys ADD COLUMN scope VARCHAR(16) NOT NULL DEFAULT 'user'"
    try:
        with engine.begin() as connection:
            connection.execute(text(alter))
    except (OperationalError, ProgrammingError):
        # Another replica may have added it between the look and the change.
        if not has_scope(engine):
            raise


DEFAULT_DB_NAME = "security.db"
"""The SQLite file in the data folder that holds keys when no database URL is set."""


def database_url(security: SecuritySettings, data: Path) -> str:
    """The configured database, or a private SQLite file in the data folder."""
    return security.db_url or sqlite_url(data / DEFAULT_DB_NAME)


class KeyStore:
    """Keys in a SQL database: a SQLite file for one gateway, PostgreSQL for replicas."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(METADATA, engine)
        add_scope_column(engine)

    @classmethod
    def open(cls, security: SecuritySettings, data: Path) -> KeyStore:
        return cls(open_database(database_url(security, data)))

    def close(self) -> None:
        self.engine.dispose()

    def create(
        self,
        name: str,
        models: Sequence[str] = (),
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrent: int | None = None,
        expires_at: float | None = None,
        scope: Scope = "user",
    ) -> tuple[ApiKey, str]:
        """The new key's record and the key itself, which is shown once and never kept."""
        if not name.strip():
            raise ConfigError("a key needs a name (--name), e.g. the client or team using it")
        key = ApiKey(
            id=secrets.token_hex(ID_HEX_DIGITS // 2),
            name=name,
            models=tuple(models),
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            created_at=time.time(),
            expires_at=expires_at,
            scope=scope,
        )
        secret = secrets.token_urlsafe(SECRET_BYTES)
        row = {**key.__dict__, "models": json.dumps(list(key.models)), "digest": digest(secret)}
        with self.engine.begin() as connection:
            connection.execute(KEYS.insert().values(**row))
        return key, f"{PREFIX}{key.id}.{secret}"

    def list(self) -> list[ApiKey]:
        query = select(*RECORD_COLUMNS).order_by(KEYS.c.created_at)
        with self.engine.connect() as connection:
            return [record(row) for row in connection.execute(query)]

    def get(self, key_id: str) -> ApiKey:
        with self.engine.connect() as connection:
            row = connection.execute(select(*RECORD_COLUMNS).where(KEYS.c.id == key_id)).first()
        if row is None:
            raise UnknownKey(key_id)
        return record(row)

    def revoke(self, key_id: str) -> ApiKey:
        key = self.get(key_id)
        if key.revoked_at is not None:
            raise ConfigError(f"key {key_id} is already revoked")
        revoked = replace(key, revoked_at=time.time())
        with self.engine.begin() as connection:
            connection.execute(
                KEYS.update().where(KEYS.c.id == key_id).values(revoked_at=revoked.revoked_at)
            )
        return revoked

    def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """A new secret for the same id, name and limits; the old secret stops working."""
        key = self.get(key_id)
        if not key.active(time.time()):
            raise ConfigError(
                f"key {key_id} is {key.state(time.time())}; create a new one with "
                "`dsdeploy keys create`"
            )
        secret = secrets.token_urlsafe(SECRET_BYTES)
        with self.engine.begin() as connection:
            connection.execute(
                KEYS.update().where(KEYS.c.id == key_id).values(digest=digest(secret))
            )
        return key, f"{PREFIX}{key.id}.{secret}"

    def verify(self, presented: str) -> ApiKey | None:
        """The record of an active key whose secret matches; None for any other string."""
        parsed = parse_key(presented)
        if parsed is None:
            return None
        key_id, secret = parsed
        try:
            with self.engine.connect() as connection:
                row = connection.execute(BY_ID, {"key_id": key_id}).first()
        except SQLAlchemyError:
            log.exception("the key database failed to look up key %s", key_id)
            raise KeyStoreUnavailable(UNAVAILABLE) from None
        if row is None or not hmac.compare_digest(row.digest, digest(secret)):
            return None
        key = record(row)
        return key if key.active(time.time()) else None

    def current(self, ids: Collection[str]) -> dict[str, tuple[ApiKey, bytes]]:
        """The active keys among ``ids``, each with its secret's digest (one query): what a
        cache of verified keys checks its entries against."""
        if not ids:
            return {}
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(select(KEYS).where(KEYS.c.id.in_(ids))).all()
        except SQLAlchemyError:
            log.exception("the key database failed to look up %d keys", len(ids))
            raise KeyStoreUnavailable(UNAVAILABLE) from None
        now = time.time()
        found = ((record(row), row.digest) for row in rows)
        return {key.id: (key, secret) for key, secret in found if key.active(now)}

    def has_active_keys(self) -> bool:
        now = time.time()
        query = (
            select(func.count())
            .select_from(KEYS)
            .where(KEYS.c.revoked_at.is_(None))
            .where(KEYS.c.expires_at.is_(None) | (KEYS.c.expires_at > now))
        )
        try:
            with self.engine.connect() as connection:
                return bool(connection.execute(query).scalar())
        except SQLAlchemyError:
            log.exception("the key database failed to count active keys")
            raise KeyStoreUnavailable(UNAVAILABLE) from None
