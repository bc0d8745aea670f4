"""Every request the gateway answers leaves exactly one audit record, refusals included,
and no prompt text, personal data or API key reaches the audit database, the gateway's
log, the engine's log or an error body. The app runs in this process in front of a stub
engine (a real process on a real socket)."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.audit import RequestAudit
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.proxy import error_type
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.security.audit import AuditLog
from dsdeploy.security.audit_writer import AuditWriter
from dsdeploy.security.db import sqlite_url
from dsdeploy.security.redact import default_redactor
from dsdeploy.settings import GatewaySettings
from tests.conftest import run_cli, start_server
from tests.stub_engine import StubEngine, stub_supervisor

FAKE_KEY = "dsk_canary0key_7f3a9c2e5b1d4086aa11"
CANARIES = [
    "11010519491231002X",  # resident ID (valid check digit)
    "13912345678",
    "+44 7700 900123",
    "canary.person@example.com",
    "4111 1111 1111 1111",
    "203.0.113.77",
    "2001:db8::7:canary",
    "欧阳娜娜",
    "Priya Okafor",
]


class KeyCheck(Hook):
    """Refuses requests without the expected bearer key, as an API key check does."""

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        if headers.get("authorization") != f"Bearer {FAKE_KEY}":
            ctx.decision = "unauthenticated"
            raise ApiError(401, "a valid API key is required", code="invalid_api_key")
        ctx.key_id = FAKE_KEY[:12]


def stub_pool(folder: Path) -> EnginePool:
    def make() -> Supervisor:
        return stub_supervisor(StubEngine(), folder)

    spec = ModelSpec("stub", make, 1, slots=4, pinned=True)
    return EnginePool([spec], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30)


class Gateway:
    def __init__(self, client: TestClient, db: Path, writer: AuditWriter, log: Path) -> None:
        self.client, self.db, self.writer, self.engine_log = client, db, writer, log

    def rows(self) -> list[sqlite3.Row]:
        self.writer.close()
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute("SELECT * FROM audit_records ORDER BY seq").fetchall()


def gateway_with_audit(tmp_path: Path, content: str) -> Iterator[Gateway]:
    db = tmp_path / "audit.db"
    redact = default_redactor() if content == "redacted" else None
    writer = AuditWriter(AuditLog.open(sqlite_url(db)), redact=redact)
    writer.start()
    pool = stub_pool(tmp_path)
    settings = GatewaySettings(max_body_bytes=4096)
    audit = RequestAudit(writer, "redacted" if content == "redacted" else "off")
    app = create_app(pool, settings, [KeyCheck()], audit=audit)
    with TestClient(app) as client:
        client.portal.call(pool.start)
        try:
            yield Gateway(client, db, writer, tmp_path / "engine.log")
        finally:
            client.portal.call(pool.stop)
            writer.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    yield from gateway_with_audit(tmp_path, "off")


def prompt(rng: random.Random) -> str:
    picked = rng.sample(CANARIES, 3)
    return f"请记录 {picked[0]}，联系 {picked[1]}; also {picked[2]} asked for this."


def request_mix(rng: random.Random, count: int) -> Iterator[tuple[str, str, dict[str, str], bytes]]:
    """Allowed chats, unauthenticated ones, unknown models, oversized bodies, bad JSON,
    unknown paths: (method, path, headers, body)."""
    auth = {"authorization": f"Bearer {FAKE_KEY}"}
    wrong = {"authorization": "Bearer dsk_wrong_" + FAKE_KEY[-8:]}
    for index in range(count):
        chat = {"model": "stub", "messages": [{"role": "user", "content": prompt(rng)}]}
        kind = index % 8
        if kind == 1:
            yield "POST", "/v1/chat/completions", wrong, json.dumps(chat).encode()
        elif kind == 2:  # noqa: PLR2004
            chat["model"] = "no-such-model"
            yield "POST", "/v1/chat/completions", auth, json.dumps(chat).encode()
        elif kind == 3:  # noqa: PLR2004
            big = {**chat, "messages": [{"role": "user", "content": prompt(rng) * 200}]}
            yield "POST", "/v1/chat/completions", auth, json.dumps(big).encode()
        elif kind == 4:  # noqa: PLR2004
            yield "POST", "/v1/chat/completions", auth, prompt(rng).encode()
        elif kind == 5:  # noqa: PLR2004
            yield "GET", f"/v1/{rng.choice(CANARIES)}", auth, b""
        elif kind == 6:  # noqa: PLR2004
            yield (
                "POST",
                "/v1/completions",
                auth,
                json.dumps(
                    {
                        "model": "stub",
                        "prompt": prompt(rng),
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    }
                ).encode(),
            )
        else:
            yield "POST", "/v1/chat/completions", auth, json.dumps(chat).encode()


def leaks(text: str) -> list[str]:
    return [c for c in [*CANARIES, FAKE_KEY] if c in text]


def test_a_thousand_requests_leave_one_record_each_and_no_personal_data_anywhere(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    statuses, error_bodies = [], []
    for method, path, headers, body in request_mix(random.Random(3), 1000):
        response = gateway.client.request(method, path, headers=headers, content=body)
        statuses.append(response.status_code)
        if response.status_code >= 400:  # noqa: PLR2004
            error_bodies.append(response.text)
        assert response.headers["x-request-id"]
    for probe in ("/health", "/health/live", "/health/ready"):
        gateway.client.get(probe)
    rows = gateway.rows()
    assert len(rows) == 1000
    assert [row["status"] for row in rows] == statuses
    assert {401, 404, 413, 400, 200} <= set(statuses)
    refused = [row for row in rows if row["status"] == 401]  # noqa: PLR2004
    assert refused and all(row["decision"] == "unauthenticated" for row in refused)
    assert all(row["key_id"] in (None, FAKE_KEY[:12]) for row in rows)
    assert all(row["content"] is None for row in rows)
    streamed = [row for row in rows if row["route"] == "completions" and row["status"] == 200]
    assert streamed and all(row["completion_tokens"] for row in streamed)
    assert AuditLog.open(sqlite_url(gateway.db)).verify().intact
    assert leaks(gateway.db.read_bytes().decode("utf-8", "replace")) == []
    app_log = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
        if not record.name.startswith("httpx2")  # the test's own client, not the gateway
    )
    assert leaks(app_log) == []
    assert leaks(gateway.engine_log.read_text()) == []
    assert leaks("\n".join(error_bodies)) == []


def test_unknown_paths_are_recorded_without_the_path_the_client_typed(gateway: Gateway) -> None:
    gateway.client.get("/v1/canary.person@example.com")
    gateway.client.get("/v1/models")
    assert [(row["route"], row["status"]) for row in gateway.rows()] == [
        ("unmatched", 404),
        ("GET /v1/models", 200),
    ]


def test_redacted_content_keeps_the_prompt_without_its_personal_data(tmp_path: Path) -> None:
    for gateway in gateway_with_audit(tmp_path, "redacted"):
        text = "我叫王小明，身份证11010519491231002X，邮箱canary.person@example.com，请总结。"
        chat = {"model": "stub", "messages": [{"role": "user", "content": text}]}
        headers = {"authorization": f"Bearer {FAKE_KEY}"}
        assert gateway.client.post("/v1/chat/completions", json=chat, headers=headers).is_success
        (row,) = gateway.rows()
        assert row["content"] == "我叫[NAME]，身份证[ID]，邮箱[EMAIL]，请总结。"


def test_engine_errors_are_logged_by_type_never_by_message() -> None:
    quoted = {"error": {"type": "server_error", "message": f"cannot parse '{CANARIES[1]}'"}}
    assert error_type(json.dumps(quoted).encode()) == "server_error"
    crash = f"crash near {CANARIES[3]}".encode()
    assert error_type(crash) == f"{len(crash)} bytes, not JSON"


@pytest.mark.engine
def test_serve_records_each_request_and_writes_them_all_on_shutdown(
    model_home: Path, tmp_path: Path
) -> None:
    server = start_server(model_home, tmp_path / "serve.log", "--audit-content", "redacted")
    try:
        chat = server.api_client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": f"Say hi to {CANARIES[8]} ({CANARIES[3]})"}],
            max_tokens=4,
        )
        assert server.api_client.with_raw_response.models.list().status_code == 200  # noqa: PLR2004
    finally:
        assert server.stop() == 0
    done = run_cli(model_home, "audit", "export", "--since", "2000-01-01")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()][-2:]
    assert [(r["route"], r["status"]) for r in records] == [
        ("chat.completions", 200),
        ("GET /v1/models", 200),
    ]
    assert records[0]["completion_tokens"] == chat.usage.completion_tokens  # type: ignore[union-attr]
    assert records[0]["content"] == "Say hi to [NAME] ([EMAIL])"
    assert leaks(done.stdout + server.log.read_text() + server.engine_log.read_text()) == []
    assert run_cli(model_home, "audit", "verify").returncode == 0
