"""A failure the gateway did not expect is answered with a generic 500 and logged, never
with its own text."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient

from dsdeploy.gateway.app import create_app
from dsdeploy.settings import GatewaySettings


class BrokenPool:
    """A pool whose lease fails with a message that must not leak."""

    def model_names(self) -> list[str]:
        return ["smollm2"]

    def health(self) -> tuple[bool, str]:
        return True, ""

    @contextlib.asynccontextmanager
    async def lease(self, model: str) -> AsyncIterator[object]:
        raise RuntimeError("secret path /etc/dsdeploy/keys in the error text")
        yield  # a generator, so that this is a context manager

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def test_unexpected_error_is_a_generic_500_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(
        create_app(BrokenPool(), GatewaySettings()), raise_server_exceptions=False
    ) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "secret path" in caplog.text
