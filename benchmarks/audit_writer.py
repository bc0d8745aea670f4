"""What the audit costs a request, and how many records a second the writer keeps.

- request path: the time ``RequestAudit.record`` takes in the event loop (build the record
  from the request's context, queue it), per request, with the writer draining meanwhile;
- sustained rate: records queued as fast as possible until the writer has written them all
  (batched inserts in one transaction each) into SQLite, and with ``--audit-content
  redacted`` (each prompt through the redactor in the writer thread).

    python benchmarks/audit_writer.py [--records 20000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dsdeploy.gateway.audit import RequestAudit
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.security.audit import AuditLog, AuditRecord, utc_now
from dsdeploy.security.audit_writer import AuditWriter, Pending
from dsdeploy.security.db import sqlite_url
from dsdeploy.security.redact import default_redactor

RESULTS = Path(__file__).parent / "results"
PROMPT = (
    "请联系王小明，电话13912345678，邮箱wang.xm@example.com。"
    "Please summarise the call with Mary Walker."
)
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "client": ("10.0.0.7", 5123),
}


def finished_context(number: int) -> RequestContext:
    ctx = RequestContext(route="chat.completions", model="smollm2", key_id="dsk_bench")
    ctx.status, ctx.usage = 200, Usage(40, 128)
    ctx.timings.first_byte = ctx.timings.received + 0.01
    ctx.timings.done = ctx.timings.received + 0.2 + number * 1e-9
    return ctx


async def request_path_us(audit: RequestAudit, count: int) -> dict[str, float]:
    """Mean microseconds of ``record`` per request in the event loop's thread: wall clock,
    and CPU time of that thread alone (on a loaded machine the wall clock also counts
    the time other processes and the writer thread held the CPU)."""
    contexts = [finished_context(n) for n in range(count)]
    start, cpu = time.perf_counter(), time.thread_time()
    for ctx in contexts:
        await audit.record(ctx, SCOPE)
    return {
        "wall_us": (time.perf_counter() - start) / count * 1e6,
        "cpu_us": (time.thread_time() - cpu) / count * 1e6,
    }


def sustained_rate(folder: Path, count: int, redacted: bool) -> dict[str, Any]:
    log = AuditLog.open(sqlite_url(folder / f"rate-{redacted}.db"))
    redact = default_redactor() if redacted else None
    if redact is not None:
        redact(PROMPT)  # load the dictionaries before the clock starts
    writer = AuditWriter(log, redact=redact, capacity=count + 1)
    record = AuditRecord(time=utc_now(), request_id="req_bench", route="chat.completions")
    for _ in range(count):
        writer.submit(Pending(record, PROMPT if redacted else None))
    start = time.perf_counter()
    writer.start()
    writer.close()
    elapsed = time.perf_counter() - start
    intact = log.verify().intact
    log.close()
    return {"redacted": redacted, "records": count, "per_s": count / elapsed, "intact": intact}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 records: checks it runs")
    args = parser.parse_args(argv)
    count = 2_000 if args.quick else args.records
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        log = AuditLog.open(sqlite_url(folder / "path.db"))
        writer = AuditWriter(log, capacity=count + 1)
        writer.start()
        asyncio.run(request_path_us(RequestAudit(writer), 200))  # warm-up
        per_request = asyncio.run(request_path_us(RequestAudit(writer), count))
        writer.close()
        log.close()
        rates = [
            sustained_rate(folder, count, redacted=False),
            sustained_rate(folder, max(count // 20, 100), redacted=True),
        ]
    print(
        f"request path: {per_request['cpu_us']:.1f} µs CPU, {per_request['wall_us']:.1f} µs "
        "wall clock per request (record built and queued, writer running)"
    )
    for rate in rates:
        mode = "redacted content" if rate["redacted"] else "no content"
        print(f"writer, SQLite, {mode}: {rate['per_s']:.0f} records/s ({rate['records']})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("audit_writer.quick.json" if args.quick else "audit_writer.json")
    out.write_text(json.dumps({"request_path_us": per_request, "rates": rates}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
