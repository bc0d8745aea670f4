"""The key store issues keys whose secret it never keeps, verifies them by id and digest,
and stops accepting revoked, rotated and expired ones — in a private SQLite file and in a
real PostgreSQL that replicas share; the verified-key cache bounds how long a revoke on
another replica takes."""

from __future__ import annotations

import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from dsdeploy.errors import ConfigError, UnknownKey
from dsdeploy.security.db import open_database
from dsdeploy.security.key_cache import KEEP_WARM_S, KeyCache
from dsdeploy.security.keys import KEYS, KeyStore, digest, parse_key
from dsdeploy.settings import SecuritySettings
from tests.real_servers import postgres_url

__all__ = ["postgres_url"]


def fresh_postgres(server_url: str) -> str:
    """A new, empty database on the shared server, so each test sees only its own keys."""
    name = "keys_" + secrets.token_hex(4)
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'security.db'}"
    return fresh_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[KeyStore]:
    opened = KeyStore(open_database(db_url))
    yield opened
    opened.close()


class Clock:
    """Monotonic time the test moves, so the cache's TTL is crossed without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_created_key_verifies_and_only_its_digest_is_stored(store: KeyStore) -> None:
    key, presented = store.create("alice", ["a"], rpm=60, tpm=1000, max_concurrent=2)
    assert presented.startswith(f"dsk-{key.id}.")
    assert len(parse_key(presented)[1]) >= 43  # type: ignore[index]  # 32 bytes, base64
    verified = store.verify(presented)
    assert verified == key
    assert verified.models == ("a",) and verified.rpm == 60 and verified.max_concurrent == 2
    secret = presented.split(".", 1)[1]
    with store.engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(sqlalchemy.text("select * from api_keys"))]
    assert secret not in repr(rows) and secret.encode() not in repr(rows).encode()


def test_a_wrong_secret_an_unknown_id_and_garbage_do_not_verify(store: KeyStore) -> None:
    key, presented = store.create("alice")
    wrong_secret = presented[:-4] + ("AAAA" if not presented.endswith("AAAA") else "BBBB")
    for candidate in (
        wrong_secret,
        f"dsk-{'0' * 10}.{presented.split('.', 1)[1]}",
        "",
        "dsk-",
        presented + "x",
        "x" * 10_000,
        "dsk-ключ.секрет",
    ):
        assert store.verify(candidate) is None, candidate


def test_revoked_keys_stop_verifying_and_revoking_twice_is_an_error(store: KeyStore) -> None:
    key, presented = store.create("alice")
    assert store.revoke(key.id).state(time.time()) == "revoked"
    assert store.verify(presented) is None
    with pytest.raises(ConfigError, match="already revoked"):
        store.revoke(key.id)
    with pytest.raises(UnknownKey, match="keys list"):
        store.revoke("0123456789")


def test_rotation_keeps_id_and_limits_and_the_old_secret_stops_working(store: KeyStore) -> None:
    key, old = store.create("alice", ["a"], rpm=5)
    rotated, new = store.rotate(key.id)
    assert rotated == key and new != old and new.startswith(f"dsk-{key.id}.")
    assert store.verify(old) is None
    assert store.verify(new) == key
    store.revoke(key.id)
    with pytest.raises(ConfigError, match="revoked"):
        store.rotate(key.id)


def test_expired_keys_stop_verifying(store: KeyStore) -> None:
    _, soon = store.create("brief", expires_at=time.time() + 0.5)
    _, past = store.create("gone", expires_at=time.time() - 1)
    assert store.verify(soon) is not None
    assert store.verify(past) is None
    time.sleep(0.6)
    assert store.verify(soon) is None
    assert [key.state(time.time()) for key in store.list()] == ["expired", "expired"]


def test_only_active_keys_count_as_keys_being_in_use(store: KeyStore) -> None:
    assert not store.has_active_keys()
    store.create("gone", expires_at=time.time() - 1)
    revoked, _ = store.create("revoked")
    store.revoke(revoked.id)
    assert not store.has_active_keys()
    store.create("alice")
    assert store.has_active_keys()


def test_a_revoke_through_one_replica_is_seen_by_another_within_the_cache_ttl(
    db_url: str,
) -> None:
    first, second = KeyStore(open_database(db_url)), KeyStore(open_database(db_url))
    clock = Clock()
    replica = KeyCache(second, ttl_s=5.0, clock=clock)
    try:
        key, presented = first.create("alice")
        assert replica.cached(presented) is None  # never seen: ask the store
        assert replica.verify(presented) == key
        first.revoke(key.id)
        clock.now += 4.9
        assert replica.cached(presented) == key  # within the TTL the cache still answers
        clock.now += 0.2
        assert replica.cached(presented) is None
        assert replica.verify(presented) is None
    finally:
        first.close()
        second.close()


def test_a_key_in_use_stays_cached_past_its_ttl_while_it_is_refreshed(store: KeyStore) -> None:
    clock = Clock()
    cache = KeyCache(store, ttl_s=5.0, clock=clock)
    key, presented = store.create("alice")
    assert cache.verify(presented) == key
    for _ in range(4):
        clock.now += 3
        assert cache.cached(presented) == key  # 12 s after the one verify
        cache.refresh()


def test_a_refresh_forgets_a_key_revoked_or_rotated_since_it_was_verified(
    store: KeyStore,
) -> None:
    cache = KeyCache(store, ttl_s=60.0)
    revoked, revoked_secret = store.create("revoked")
    rotated, rotated_secret = store.create("rotated")
    kept, kept_secret = store.create("kept")
    for presented in (revoked_secret, rotated_secret, kept_secret):
        assert cache.verify(presented) is not None
    store.revoke(revoked.id)
    _, new_secret = store.rotate(rotated.id)
    cache.refresh()
    assert cache.cached(revoked_secret) is None
    assert cache.cached(rotated_secret) is None
    assert cache.cached(kept_secret) == kept
    assert cache.verify(new_secret) is not None


def test_keys_unused_for_long_cost_the_store_nothing(store: KeyStore) -> None:
    clock = Clock()
    cache = KeyCache(store, ttl_s=5.0, clock=clock)
    _, presented = store.create("alice")
    assert cache.verify(presented) is not None
    clock.now += KEEP_WARM_S + 1
    with store.engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TABLE api_keys"))
    cache.refresh()  # a query would fail: KeyStoreUnavailable


def test_the_first_key_turns_keys_on_within_the_cache_ttl(store: KeyStore) -> None:
    clock = Clock()
    cache = KeyCache(store, ttl_s=5.0, clock=clock)
    assert cache.enforced_cached() is None
    assert cache.refresh_enforced() is False
    store.create("alice")
    assert cache.enforced_cached() is False
    clock.now += 5
    assert cache.enforced_cached() is None
    assert cache.refresh_enforced() is True
    assert KeyCache(store, ttl_s=5.0, require=True).enforced_cached() is True


def test_a_cached_key_that_expires_is_refused_before_its_ttl_ends(store: KeyStore) -> None:
    cache = KeyCache(store, ttl_s=60.0)
    _, presented = store.create("brief", expires_at=time.time() + 0.3)
    assert cache.verify(presented) is not None
    time.sleep(0.4)
    assert cache.cached(presented) is None


def test_the_default_database_is_a_file_only_its_owner_can_read(tmp_path: Path) -> None:
    store = KeyStore.open(SecuritySettings(), tmp_path / "data")
    store.create("alice")
    store.close()
    path = tmp_path / "data" / "security.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_a_key_table_made_before_scopes_gets_them_and_its_keys_stay_user_keys(
    db_url: str,
) -> None:
    """An upgrade on an existing database: the old table (no ``scope`` column) with a key
    in it is opened by the new store, twice, as two replicas would."""
    old = sqlalchemy.Table(
        "api_keys",
        sqlalchemy.MetaData(),
        *(
            sqlalchemy.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in KEYS.columns
            if c.name != "scope"
        ),
    )
    engine = open_database(db_url)
    old.create(engine)
    secret = secrets.token_urlsafe(32)
    row = {"id": "0123456789", "digest": digest(secret), "name": "old", "models": "[]"}
    with engine.begin() as connection:
        connection.execute(old.insert().values(**row, created_at=time.time()))
    first, again = KeyStore(engine), KeyStore(open_database(db_url))
    [key] = again.list()
    assert (key.name, key.scope, key.is_admin) == ("old", "user", False)
    assert first.verify(f"dsk-0123456789.{secret}") == key
    admin, _ = first.create("operator", scope="admin")
    assert again.get(admin.id).is_admin
    first.close()
    again.close()
