"""The audit chain finds an edited, deleted or reordered record and names it; exports in
JSONL and CSV; admin events join the chain; several writers on one PostgreSQL chain keep
it whole; the writer thread writes everything queued before it stops."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import sqlite3
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from dsdeploy.bench.launch import free_port
from dsdeploy.security.audit import AuditLog, AuditRecord, utc_now
from dsdeploy.security.audit_writer import AuditWriter, Pending
from dsdeploy.security.db import sqlite_url
from tests.conftest import run_cli
from tests.real_servers import postgres_url

__all__ = ["postgres_url"]  # the fixture, used by name


def request(number: int, time: str | None = None) -> AuditRecord:
    return AuditRecord(
        time=time or utc_now(),
        request_id=f"req_{number:04d}",
        key_id="dsk_test",
        client_ip="127.0.0.1",
        route="chat.completions",
        model="smollm2",
        status=200,
        decision="allowed",
        prompt_tokens=12,
        completion_tokens=34,
        latency_us=5600,
        ttft_us=1200,
    )


def audit_db(home: Path) -> Path:
    return home / "data" / "audit.db"


@pytest.fixture
def chain(isolated_home: Path) -> Path:
    """Ten records in the audit database of the test's DSDEPLOY_HOME."""
    log = AuditLog.open(sqlite_url(audit_db(isolated_home)))
    log.append([request(n) for n in range(9)])
    log.record_admin("key.created", "dsk_test", "cli")
    return audit_db(isolated_home)


def sql(db: Path, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            conn.execute(statement)


def test_an_intact_chain_verifies_and_the_database_is_private(
    chain: Path, isolated_home: Path
) -> None:
    done = run_cli(isolated_home, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert "intact: 10 records" in done.stderr
    assert stat.S_IMODE(chain.stat().st_mode) == 0o600


def test_one_flipped_byte_fails_verify_naming_the_record(chain: Path, isolated_home: Path) -> None:
    sql(chain, "UPDATE audit_records SET model = 'smollm3' WHERE seq = 4")
    done = run_cli(isolated_home, "audit", "verify")
    assert done.returncode == 1
    assert "record 4: edited" in done.stderr


def test_a_deleted_record_is_found(chain: Path, isolated_home: Path) -> None:
    sql(chain, "DELETE FROM audit_records WHERE seq = 6")
    done = run_cli(isolated_home, "audit", "verify")
    assert done.returncode == 1
    assert "record 6: missing" in done.stderr


def test_a_deleted_last_record_is_found(chain: Path) -> None:
    sql(chain, "DELETE FROM audit_records WHERE seq = 10")
    broken = AuditLog.open(sqlite_url(chain)).verify().broken
    assert broken is not None and broken.seq == 10 and "missing" in broken.reason


def test_records_deleted_and_renumbered_are_found(chain: Path) -> None:
    sql(
        chain,
        "DELETE FROM audit_records WHERE seq IN (3, 4)",
        "UPDATE audit_records SET seq = seq - 2 WHERE seq > 4",
    )
    broken = AuditLog.open(sqlite_url(chain)).verify().broken
    assert broken is not None and broken.seq == 3  # noqa: PLR2004
    assert "deleted" in broken.reason


def test_a_swapped_pair_is_found_as_reordered(chain: Path, isolated_home: Path) -> None:
    sql(
        chain,
        "UPDATE audit_records SET seq = -1 WHERE seq = 5",
        "UPDATE audit_records SET seq = 5 WHERE seq = 6",
        "UPDATE audit_records SET seq = 6 WHERE seq = -1",
    )
    done = run_cli(isolated_home, "audit", "verify")
    assert done.returncode == 1
    assert "record 5: reordered" in done.stderr


def test_export_writes_the_range_as_jsonl_and_csv(isolated_home: Path) -> None:
    log = AuditLog.open(sqlite_url(audit_db(isolated_home)))
    log.append(
        [
            request(1, "2026-11-30T23:59:59.000000Z"),
            request(2, "2026-12-01T00:00:00.000000Z"),
            request(3, "2026-12-02T12:00:00.000000Z"),
            request(4, "2026-12-03T00:00:00.000000Z"),
        ]
    )
    out = isolated_home / "audit.jsonl"
    done = run_cli(
        isolated_home, "audit", "export", "--since", "2026-12-01", "--until", "2026-12-03",
        "--format", "jsonl", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["request_id"] for row in rows] == ["req_0002", "req_0003"]
    assert rows[0]["seq"] == 2 and len(rows[0]["hash"]) == 64  # noqa: PLR2004
    done = run_cli(isolated_home, "audit", "export", "--since", "2026-12-02", "--format", "csv")
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(row["seq"], row["status"], row["kind"]) for row in table] == [
        ("3", "200", "request"),
        ("4", "200", "request"),
    ]


def test_export_with_a_bad_date_says_what_to_type(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "audit", "export", "--since", "yesterday")
    assert done.returncode == 2  # noqa: PLR2004
    assert "not a date" in done.stderr and "Traceback" not in done.stderr


def test_export_since_is_utc(tmp_path: Path) -> None:
    log = AuditLog.open(sqlite_url(tmp_path / "audit.db"))
    log.append([request(1, "2026-12-01T07:59:00.000000Z"), request(2)])
    out = io.StringIO()
    since = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    until = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    assert log.export(out, since, until, "jsonl") == 0


def test_the_writer_writes_every_queued_record_before_it_stops(tmp_path: Path) -> None:
    log = AuditLog.open(sqlite_url(tmp_path / "audit.db"))
    writer = AuditWriter(log, batch=64)
    writer.start()
    for number in range(2000):
        assert writer.submit(Pending(request(number)))
    writer.close()
    result = log.verify()
    assert (result.records, result.intact, writer.lost) == (2000, True, 0)


def test_a_full_queue_waits_then_counts_and_logs_what_it_could_not_keep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    log = AuditLog.open(sqlite_url(tmp_path / "audit.db"))
    writer = AuditWriter(log, capacity=1, full_wait_s=0.05)  # not started: nothing drains it
    asyncio.run(writer.put(Pending(request(1))))
    asyncio.run(writer.put(Pending(request(2))))
    assert writer.lost == 1
    assert "req_0002 NOT written (1 lost so far)" in caplog.text


def test_two_writers_on_one_postgresql_chain_keep_it_whole(postgres_url: str) -> None:
    logs = [AuditLog.open(postgres_url), AuditLog.open(postgres_url)]
    before = logs[0].verify().records
    start = threading.Barrier(len(logs) * 2)

    def append_many(log: AuditLog, offset: int) -> None:
        start.wait()
        for number in range(offset, offset + 100):
            log.append([request(number)] * (1 + number % 3))

    threads = [
        threading.Thread(target=append_many, args=(log, offset))
        for offset, log in enumerate(logs * 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = logs[0].verify()
    for log in logs:
        log.close()
    assert result.intact, result.broken
    added = sum(1 + n % 3 for offset in range(4) for n in range(offset, offset + 100))
    assert result.records == before + added


def test_serve_with_an_unreachable_database_fails_in_one_line(isolated_home: Path) -> None:
    port = str(free_port())
    unreachable = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/audit"
    done = run_cli(isolated_home, "serve", "--port", port, DSDEPLOY_DB_URL=unreachable)
    assert done.returncode == 1
    assert "cannot open the key database" in done.stderr and "DSDEPLOY_DB_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_an_unknown_audit_content_mode(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "serve", "--audit-content", "everything")
    assert done.returncode == 2  # noqa: PLR2004
    assert "audit_content" in done.stderr and "Traceback" not in done.stderr


def open_and_note(url: str, actor: str, ready: Any, seqs: Any) -> None:
    ready.wait()  # every process opens the new database at the same moment
    seqs.put(AuditLog.open(url).record_admin("model.converted", "tiny", actor))


def test_processes_opening_a_new_audit_database_at_once_all_get_in(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "audit.db")
    spawn = multiprocessing.get_context("spawn")
    ready, seqs = spawn.Barrier(6), spawn.Queue()
    workers = [
        spawn.Process(target=open_and_note, args=(url, f"cli-{n}", ready, seqs)) for n in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert sorted(seqs.get(timeout=5) for _ in workers) == [1, 2, 3, 4, 5, 6]
    assert AuditLog.open(url).verify().intact
