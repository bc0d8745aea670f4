"""``--log-format json``: every line the gateway process writes is one JSON object with time
(ISO 8601, UTC), level, logger and message; requests are named by id, route, model, status
and key id; no key, prompt or completion text is ever written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from dsdeploy.security.db import open_database
from dsdeploy.security.keys import KeyStore
from tests.conftest import start_server
from tests.stub_gateway import Gateway, start_gateway

CANARY = "canary-7f3a9c"
"""Put in prompts, model names and keys; must appear nowhere in the log."""
PROMPT = f"my secret is {CANARY}-prompt"
STUB_TEXT = "tok0 tok1 tok2"
"""What the stub engine answers; a completion, so not for the log either."""


def parsed(log: Path) -> list[dict[str, object]]:
    """Every line of the log as an object (fails on the first line that is not one)."""
    lines = log.read_text().splitlines()
    assert lines, "the log is empty"
    return [json.loads(line) for line in lines]


def assert_well_formed(record: dict[str, object]) -> None:
    assert {"time", "level", "logger", "message"} <= set(record), record
    time = datetime.fromisoformat(str(record["time"]))
    assert time.utcoffset() == timedelta(0)


def send_mixed_requests(base_url: str, headers: dict[str, str]) -> dict[str, str]:
    """One request of each kind, with the canary in prompts and made-up names; the ids the
    gateway gave them, by kind."""
    chat = {"model": "stub", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4}
    asks: dict[str, tuple[str, dict[str, object], dict[str, str]]] = {
        "chat": ("/v1/chat/completions", chat, headers),
        "stream": ("/v1/chat/completions", {**chat, "stream": True}, headers),
        "completion": ("/v1/completions", {"model": "stub", "prompt": PROMPT}, headers),
        "messages": ("/v1/messages", {**chat, "max_tokens": 4}, headers),
        "bad_field": ("/v1/chat/completions", {**chat, "max_tokens": CANARY}, headers),
        "unknown_model": ("/v1/chat/completions", {**chat, "model": CANARY}, headers),
        "bad_key": ("/v1/chat/completions", chat, {"authorization": f"Bearer dsk-{CANARY}"}),
    }
    ids = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for kind, (path, body, sent) in asks.items():
            answer = client.post(path, json=body, headers=sent)
            ids[kind] = answer.headers["x-request-id"]
    return ids


@pytest.fixture
def json_gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path / "gateway.log",
        DSDEPLOY_LOG_FORMAT="json",
        DSDEPLOY_ACCESS_LOG="true",
        DSDEPLOY_LOG_LEVEL="info",
    )
    yield gateway
    gateway.stop()


def test_json_logs_name_each_request_and_hold_no_key_prompt_or_completion(
    json_gateway: Gateway, tmp_path: Path
) -> None:
    key, secret = json_gateway.store.create("logged")
    ids = send_mixed_requests(json_gateway.base_url, {"authorization": f"Bearer {secret}"})
    json_gateway.stop()  # shutdown lines too
    log = tmp_path / "gateway.log"
    records = parsed(log)
    for record in records:
        assert_well_formed(record)
    text = log.read_text()
    for secret_text in (CANARY, secret, secret.split(".")[1], STUB_TEXT):
        assert secret_text not in text
    assert {"uvicorn.error", "dsdeploy.access"} <= {r["logger"] for r in records}
    access = {r["request_id"]: r for r in records if r["logger"] == "dsdeploy.access"}
    assert set(ids.values()) <= set(access)
    chat = access[ids["chat"]]
    assert chat["route"] == "chat.completions"
    assert (chat["status"], chat["model"], chat["key_id"]) == (200, "stub", key.id)
    assert isinstance(chat["duration_ms"], float)
    assert access[ids["messages"]]["route"] == "messages"
    assert access[ids["stream"]]["stream"] is True
    assert access[ids["bad_field"]]["status"] == 400
    assert (access[ids["unknown_model"]]["status"], access[ids["unknown_model"]]["model"]) == (
        404,
        "unknown",
    )
    assert access[ids["bad_key"]]["status"] == 401


def test_text_stays_the_default_format(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "gateway.log", DSDEPLOY_LOG_LEVEL="info")
    gateway.stop()
    first = (tmp_path / "gateway.log").read_text().splitlines()[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


@pytest.mark.engine
def test_serve_with_json_logs_writes_only_json_lines(model_home: Path, tmp_path: Path) -> None:
    """The whole ``dsdeploy serve`` process: its start messages, plan and engine loads too."""
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    store = KeyStore(open_database(db))
    key, secret = store.create("logged")
    store.close()
    log = tmp_path / "serve.log"
    server = start_server(
        model_home, log, "--log-format", "json", "--access-log", DSDEPLOY_DB_URL=db
    )
    try:
        with openai.OpenAI(base_url=server.api, api_key=secret, max_retries=0) as client:
            answer = client.chat.completions.with_raw_response.create(
                model="smollm2", messages=[{"role": "user", "content": PROMPT}], max_tokens=8
            )
        completion = answer.parse().choices[0].message.content or ""
        refused = httpx.post(
            server.api + "/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}]},
            headers={"authorization": f"Bearer dsk-{CANARY}"},
        )
    finally:
        assert server.stop() == 0
    records = parsed(log)
    for record in records:
        assert_well_formed(record)
    text = log.read_text()
    for secret_text in (CANARY, secret, secret.split(".")[1]):
        assert secret_text not in text
    if len(completion.strip()) >= 12:
        assert completion not in text
    loggers = {r["logger"] for r in records}
    assert {"dsdeploy.serve", "dsdeploy.runtime", "uvicorn.error", "dsdeploy.access"} <= loggers
    access = {r["request_id"]: r for r in records if r["logger"] == "dsdeploy.access"}
    served = access[answer.headers["x-request-id"]]
    assert (served["status"], served["model"], served["key_id"]) == (200, "smollm2", key.id)
    assert access[refused.headers["x-request-id"]]["status"] == 401
