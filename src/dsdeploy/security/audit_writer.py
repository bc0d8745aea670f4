"""Appends audit records off the request path: requests hand their record to a bounded
queue (a few microseconds), one thread writes what has gathered in batches, one
transaction each, and ``close`` writes everything still queued before it returns. Once a
record arrives the thread waits ``linger_s`` (0.1 s) before it writes, so that requests
finishing close together share one transaction: the thread's Python work (SQLAlchemy, the
hash chain) holds the interpreter lock, and every wake-up of it delays the event loop.

When the database falls behind and the queue is full, a request waits for room up to
``full_wait_s`` in a worker thread (its answer is already sent: the client never waits,
only the gateway's own bookkeeping slows to the database's pace); a record that still finds
no room is counted in ``lost`` and logged as an error with the running count, never dropped
quietly.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from dsdeploy.security.audit import AuditLog, AuditRecord

log = logging.getLogger("dsdeploy.security.audit")

Redactor = Callable[[str], str]


@dataclass(frozen=True)
class Pending:
    """A record on its way; ``raw_content`` is redacted by the writer thread, not by the
    request, and only the redacted text is stored."""

    record: AuditRecord
    raw_content: str | None = None


class AuditWriter:
    """The gateway's single appender to the audit chain."""

    def __init__(
        self,
        audit: AuditLog,
        *,
        redact: Redactor | None = None,
        capacity: int = 10_000,
        batch: int = 500,
        full_wait_s: float = 1.0,
        retry_s: float = 1.0,
        linger_s: float = 0.1,
    ) -> None:
        self.audit = audit
        self.redact = redact
        self.batch = batch
        self.full_wait_s = full_wait_s
        self.retry_s = retry_s
        self.linger_s = linger_s
        self.lost = 0
        self.written = 0
        self._queue: queue.Queue[Pending | None] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, pending: Pending) -> bool:
        """Queue without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            return False
        return True

    async def put(self, pending: Pending) -> None:
        """Queue, waiting for room (in a worker thread, not the event loop) when full."""
        if self.submit(pending):
            return
        try:
            await asyncio.to_thread(self._queue.put, pending, True, self.full_wait_s)
        except queue.Full:
            self.lost += 1
            log.error(
                "audit queue full for %.1f s: record of request %s NOT written "
                "(%d lost so far); the audit database is too slow or unreachable",
                self.full_wait_s,
                pending.record.request_id,
                self.lost,
            )

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            taken = [] if first is None else [first]
            stopping = first is None
            if not stopping:
                time.sleep(self.linger_s)
            while len(taken) < self.batch and not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = item is None
                if item is not None:
                    taken.append(item)
            if taken:
                self._write([self._prepared(item) for item in taken])

    def _prepared(self, pending: Pending) -> AuditRecord:
        if pending.raw_content is None or self.redact is None:
            return pending.record
        return replace(pending.record, content=self.redact(pending.raw_content))

    def _write(self, records: list[AuditRecord]) -> None:
        """Append, retrying a failing database a few times before the batch is given up
        (and counted, loudly)."""
        for attempt in range(5):
            try:
                self.audit.append(records)
            except Exception:
                log.exception("audit write failed (attempt %d of 5)", attempt + 1)
                time.sleep(self.retry_s)
            else:
                self.written += len(records)
                return
        self.lost += len(records)
        log.error("%d audit records NOT written (%d lost so far)", len(records), self.lost)
