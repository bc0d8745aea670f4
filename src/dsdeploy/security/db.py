"""One database for keys and the audit log: SQLite in the data folder for one gateway,
PostgreSQL (or any SQLAlchemy URL) when several replicas share them."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def private_sqlite_file(path: Path) -> None:
    """Create the file (and its folder) readable by its owner only, before SQLite opens it:
    key digests and audit records are nobody else's business."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def open_database(url: str) -> Engine:
    """An engine for ``url``; a SQLite file is made private first and uses WAL, so readers
    (``keys list``, ``audit export``) never block the gateway's writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        private_sqlite_file(Path(parsed.database))
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: object, _record: object) -> None:
        cursor = connection.cursor()  # type: ignore[attr-defined]
        # The wait first: switching to WAL needs the write lock another process may hold.
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def create_tables(metadata: MetaData, engine: Engine, attempts: int = 5) -> None:
    """``create_all``, safe when several processes open a new database at once: it checks
    for each table, then creates it, so a process that lost the race to another fails on a
    table the other just made; the next pass finds it there (one race per table at most)."""
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == attempts:
                raise
