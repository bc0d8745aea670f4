"""Requests generated from the gateway's own ``/openapi.json`` by schemathesis, valid and
invalid, sent with a valid API key to a real listening gateway (network guard and auth
included) in front of the stub engine: no answer is a 5xx, every 4xx is in the called
API's error shape, no answer shows a stack trace or a server path, and answers match the
document (schemathesis's checks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.routes_anthropic import PREFIX as ANTHROPIC_PREFIX
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.settings import SecuritySettings
from tests.gateway_server import MODEL, running_gateway

EXAMPLES_PER_MODE = 100
"""Per operation and generation mode: 10 POST operations x 2 modes make 2,000 requests."""
MIN_REQUESTS = 2000
ANSWER_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
LEAKS = ("Traceback", 'File "', "/work", "/tmp", "/home", "/usr", ".py", "site-packages")


@dataclass
class Findings:
    sent: int = 0
    answered: int = 0
    """2xx answers: requests that passed the key check and reached an engine or a route."""
    problems: list[str] = field(default_factory=list)

    def add(self, case: Case, status: int, why: str) -> None:
        self.problems.append(
            f"{case.method} {case.path} -> {status}: {why}; body {case.body!r:.300}"
        )


def error_shape_problem(path: str, payload: Any) -> str | None:
    """Why ``payload`` is not the error body of the API at ``path``, or None."""
    if path.startswith(ANTHROPIC_PREFIX):
        if not isinstance(payload, dict) or set(payload) != {"type", "error", "request_id"}:
            return "not an Anthropic error body"
        detail = payload["error"]
        expected = payload["type"] == "error" and isinstance(detail, dict)
        if not expected or set(detail) != {"type", "message"}:
            return "not an Anthropic error body"
        return None
    if not isinstance(payload, dict) or set(payload) != {"error"}:
        return "not an OpenAI error body"
    detail = payload["error"]
    if not isinstance(detail, dict) or set(detail) != {"message", "type", "param", "code"}:
        return "not an OpenAI error body"
    return None if isinstance(detail["message"], str) else "message is not text"


def check(case: Case, response: requests.Response, findings: Findings) -> None:
    status = response.status_code
    sent = json.dumps(case.body, default=str) + case.formatted_path
    if status >= 500:
        findings.add(case, status, response.text[:300])
    leaked = [mark for mark in LEAKS if mark in response.text and mark not in sent]
    if leaked:
        findings.add(case, status, f"answer shows {leaked}: {response.text[:300]}")
    if 400 <= status < 500:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if (why := error_shape_problem(case.path, payload)) is not None:
            findings.add(case, status, f"{why}: {response.text[:300]}")


SCHEMATHESIS_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
"""Its own checks, less ``positive_data_acceptance``: a valid body may still be refused
with a documented 400 when it asks more of the engine than it offers (``n`` over its
slots), or 404 for a model name that is not served."""


def conforms(case: Case, response: requests.Response, findings: Findings) -> None:
    try:
        case.validate_response(response, checks=SCHEMATHESIS_CHECKS)
    except FailureGroup as failures:
        for failure in failures.exceptions:
            findings.add(case, response.status_code, f"{failure}".splitlines()[0])


def aim_at_the_served_model(case: Case, findings: Findings) -> None:
    """Every other valid body names the served model, so the fuzz reaches the engine, and
    asks for a short answer, so the run stays short."""
    body = case.body
    if isinstance(body, dict) and "model" in body and findings.sent % 2:
        body["model"] = MODEL
        for limit in ANSWER_LIMITS:
            if isinstance(body.get(limit), int):
                body[limit] = min(body[limit], 8)


def fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    findings: Findings,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Case) -> None:
        if mode is GenerationMode.POSITIVE:
            aim_at_the_served_model(case, findings)
        response = case.call(base_url=base_url, session=session, timeout=30)
        findings.sent += 1
        findings.answered += response.status_code < 300
        check(case, response, findings)
        conforms(case, response, findings)

    send()


@pytest.fixture
def key(tmp_path: Path) -> Iterator[tuple[KeyStore, str]]:
    store = KeyStore(open_database(sqlite_url(tmp_path / "security.db")))
    _, presented = store.create("fuzz")
    yield store, presented
    store.close()


@pytest.fixture
def base_url(tmp_path: Path, key: tuple[KeyStore, str]) -> Iterator[str]:
    """Keys required (one exists): the fuzz presents a valid one, so it reaches routing."""
    auth = AuthConfig(keys=KeyCache(key[0], ttl_s=5.0))
    with running_gateway(tmp_path, SecuritySettings(), auth=auth) as port:
        yield f"http://127.0.0.1:{port}"


def test_generated_requests_get_no_5xx_only_api_shaped_errors_and_no_leaks(
    base_url: str, key: tuple[KeyStore, str]
) -> None:
    bearer = {"authorization": f"Bearer {key[1]}"}
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", headers=bearer)
    findings = Findings()
    with requests.Session() as session:
        session.headers.update(bearer)
        for result in schema.get_all_operations():
            operation = result.ok()
            # Only bodies can be made invalid: a path or no parameter reads as any string.
            modes = list(GenerationMode) if operation.body else [GenerationMode.POSITIVE]
            for mode in modes:
                fuzz(operation, mode, base_url, session, findings)
    assert findings.problems == []
    assert findings.sent >= MIN_REQUESTS
    assert findings.answered >= MIN_REQUESTS // 10
