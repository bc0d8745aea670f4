"""A failure the gateway did not expect is answered with a generic 500 and logged, never
with its own text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dsdeploy.engines.base import EngineCapabilities
from dsdeploy.gateway.app import create_app


class BrokenUpstream:
    """An upstream whose capabilities lookup fails with a message that must not leak."""

    model_name = "smollm2"
    socket_path = Path("/nonexistent/engine.sock")
    ready = True

    @property
    def capabilities(self) -> EngineCapabilities:
        raise RuntimeError("secret path /etc/dsdeploy/keys in the error text")

    def unavailable_reason(self) -> str:
        return "unused"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def test_unexpected_error_is_a_generic_500_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(create_app(BrokenUpstream()), raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "secret path" in caplog.text
