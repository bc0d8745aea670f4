"""The audit log: one append-only chain of records, each sealed with the hash of the one
before it, so an edited, deleted or reordered record is found by ``verify``.

A record holds who asked for what and how it ended (time, request id, key id, client
address, route, model, status, decision, token counts, latency, time to first token), never
a key, a header, or prompt or completion text — except, when the operator asks for it, the
prompt after the PII redactor ran (``content``). Admin events (keys created or revoked,
models pulled, reloads) join the same chain as ``kind="admin"`` records.

``hash = SHA-256(canonical JSON of the fields, the sequence number and prev_hash)``: the
sequence number is sealed too, so moving a record is as visible as editing it. Several
gateway replicas may append to one PostgreSQL chain: an append first updates the chain's
head row, which holds that row's lock (SQLite: the database's write lock) until the
transaction commits, so appends are serialized and the chain never forks.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from dsdeploy.security.db import create_tables, open_database, sqlite_url
from dsdeploy.settings import SecuritySettings

GENESIS = "0" * 64
"""``prev_hash`` of the first record."""

metadata = MetaData()
records_table = Table(
    "audit_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(64)),
    Column("key_id", String(64)),
    Column("client_ip", String(64)),
    Column("route", String(128)),
    Column("model", String(256)),
    Column("status", Integer),
    Column("decision", String(64)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("latency_us", Integer),
    Column("ttft_us", Integer),
    Column("action", String(64)),
    Column("subject", String(256)),
    Column("actor", String(128)),
    Column("content", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, index=True),
)
head_table = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)


def audit_url(security: SecuritySettings, data: Path) -> str:
    """The shared database when one is set, else ``audit.db`` in the data folder."""
    return security.db_url or sqlite_url(data / "audit.db")


def utc_now() -> str:
    return iso_time(datetime.now(timezone.utc))


def iso_time(moment: datetime) -> str:
    """Fixed-width UTC text: sorts as time does, and hashes the same on every database."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditRecord:
    """What is kept about one request (``kind="request"``) or admin action (``"admin"``)."""

    time: str
    kind: Literal["request", "admin"] = "request"
    request_id: str | None = None
    key_id: str | None = None
    client_ip: str | None = None
    route: str | None = None
    model: str | None = None
    status: int | None = None
    decision: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_us: int | None = None
    ttft_us: int | None = None
    action: str | None = None
    subject: str | None = None
    actor: str | None = None
    content: str | None = None
    """The prompt after redaction, only with ``--audit-content redacted``."""


RECORD_FIELDS = tuple(field.name for field in fields(AuditRecord))


def values_of(record: AuditRecord) -> dict[str, Any]:
    """The record's fields (``dataclasses.asdict`` deep-copies: 10x slower here)."""
    return {name: getattr(record, name) for name in RECORD_FIELDS}


def seal(record: AuditRecord, seq: int, prev_hash: str) -> str:
    """The record's hash: canonical JSON (sorted keys, no spaces, UTF-8) of its fields, its
    sequence number and the previous record's hash."""
    body = {**values_of(record), "seq": seq, "prev_hash": prev_hash}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Broken:
    """The first record where the chain does not hold, and why."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.reason}"


@dataclass(frozen=True)
class Verified:
    records: int
    broken: Broken | None

    @property
    def intact(self) -> bool:
        return self.broken is None


class AuditLog:
    """The chain in one database; safe to append to from several processes at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(metadata, engine)
        try:
            with engine.begin() as conn:
                conn.execute(insert(head_table).values(id=1, seq=0, hash=GENESIS))
        except IntegrityError:
            pass  # made before, by this or another replica

    @classmethod
    def open(cls, url: str) -> AuditLog:
        return cls(open_database(url))

    def close(self) -> None:
        self.engine.dispose()

    def append(self, records: Sequence[AuditRecord]) -> int:
        """Add ``records`` at the end of the chain in one transaction; the sequence number
        of the last one."""
        with self.engine.begin() as conn:
            return append_locked(conn, records)

    def record_admin(self, action: str, subject: str, actor: str) -> int:
        """Note an operator's action, e.g. ``("key.created", "dsk_ab12", "cli")``."""
        record = AuditRecord(
            time=utc_now(), kind="admin", action=action, subject=subject, actor=actor
        )
        return self.append([record])

    def verify(self) -> Verified:
        with self.engine.connect() as conn:
            return verify_chain(conn)

    def export(self, out: IO[str], since: datetime | None, until: datetime | None, fmt: str) -> int:
        """Write the records from ``since`` up to ``until`` (both UTC) as JSONL or CSV,
        with their sequence numbers and hashes; the number written."""
        query = select(records_table).order_by(records_table.c.seq)
        if since is not None:
            query = query.where(records_table.c.time >= iso_time(since))
        if until is not None:
            query = query.where(records_table.c.time < iso_time(until))
        with self.engine.connect() as conn:
            rows = (
                dict(row._mapping) for row in conn.execution_options(yield_per=1000).execute(query)
            )
            return write_rows(out, rows, fmt)


def append_locked(conn: Connection, records: Sequence[AuditRecord]) -> int:
    # The update comes first: it takes the head row's lock (PostgreSQL) or the write lock
    # (SQLite) before the head is read, so no other appender can read the same head.
    conn.execute(update(head_table).where(head_table.c.id == 1).values(seq=head_table.c.seq))
    head = conn.execute(select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1))
    seq, prev = head.one()
    rows = []
    for record in records:
        seq += 1
        digest = seal(record, seq, prev)
        rows.append({**values_of(record), "seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    if rows:
        conn.execute(insert(records_table), rows)
        conn.execute(update(head_table).where(head_table.c.id == 1).values(seq=seq, hash=prev))
    return int(seq)


def record_of(row: dict[str, Any]) -> AuditRecord:
    return AuditRecord(**{name: row[name] for name in RECORD_FIELDS})


def seq_of_hash(conn: Connection, digest: str) -> int | None:
    found = conn.execute(select(records_table.c.seq).where(records_table.c.hash == digest))
    seq = found.scalar()
    return None if seq is None else int(seq)


def broken_link(conn: Connection, seq: int, prev_hash: str) -> Broken:
    """Why a record's ``prev_hash`` is not its predecessor's hash."""
    linked = seq_of_hash(conn, prev_hash)
    if linked is not None and linked > seq:
        return Broken(seq, f"reordered: it belongs after record {linked}")
    if linked is not None:
        return Broken(seq, f"reordered or records deleted: it belongs after record {linked}")
    return Broken(seq, "the record before it was deleted or edited (its link does not match)")


def verify_chain(conn: Connection) -> Verified:
    """Walk the chain in order; the first record that is missing, edited or out of place."""
    query = select(records_table).order_by(records_table.c.seq)
    prev, expected = GENESIS, 1
    for row in conn.execution_options(yield_per=1000).execute(query):
        values = dict(row._mapping)
        seq = int(values["seq"])
        if seq != expected:
            return Verified(expected - 1, Broken(expected, "missing: deleted from the chain"))
        if values["prev_hash"] != prev:
            return Verified(seq - 1, broken_link(conn, seq, values["prev_hash"]))
        if seal(record_of(values), seq, prev) != values["hash"]:
            return Verified(seq - 1, Broken(seq, "edited: its fields do not match its hash"))
        prev, expected = values["hash"], seq + 1
    head_seq, head_hash = conn.execute(select(head_table.c.seq, head_table.c.hash)).one()
    if head_seq >= expected:
        return Verified(expected - 1, Broken(expected, "missing: the end of the chain was deleted"))
    if head_seq == expected - 1 and head_hash != prev:
        return Verified(expected - 1, Broken(head_seq, "edited: it is not the chain's head"))
    return Verified(expected - 1, None)


def write_rows(out: IO[str], rows: Iterable[dict[str, Any]], fmt: str) -> int:
    columns = ["seq", *RECORD_FIELDS, "prev_hash", "hash"]
    count = 0
    writer = csv.DictWriter(out, fieldnames=columns) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        ordered = {name: row[name] for name in columns}
        if writer is not None:
            writer.writerow(ordered)
        else:
            out.write(json.dumps(ordered, ensure_ascii=False) + "\n")
        count += 1
    return count
