"""The CLI's end of the control socket: ask the server running for this data folder to
reload models, and read back what each reload did."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from dsdeploy.control import answers, control_socket
from dsdeploy.errors import ReloadFailed, ServerUnreachable
from dsdeploy.runtime.reload import ReloadOutcome


def request_reload(data_dir: Path, model: str | None) -> list[ReloadOutcome]:
    """Each reload's outcome; waits as long as the server works (each reload is bounded
    there by the engine's ready timeout and the drain bound)."""
    path = control_socket(data_dir)
    if path.exists() and not os.access(path, os.W_OK):
        raise ServerUnreachable(
            f"{path} is not yours to open: run `dsdeploy reload` as the user that runs "
            "`dsdeploy serve`"
        )
    if not answers(path):
        raise ServerUnreachable(
            f"no dsdeploy serve is running for data dir {data_dir}; start it with `dsdeploy serve`"
        )
    transport = httpx.HTTPTransport(uds=str(path))
    timeout = httpx.Timeout(10.0, read=None)
    try:
        with httpx.Client(transport=transport, base_url="http://dsdeploy", timeout=timeout) as c:
            response = c.post("/reload", json={} if model is None else {"model": model})
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"the server on {path} stopped answering ({type(exc).__name__}); see its log"
        ) from None
    if response.status_code >= 500:
        raise ReloadFailed(
            f"the server failed to reload (HTTP {response.status_code}); its log says why"
        )
    try:
        body = response.json()
        if response.status_code != 200:
            raise ReloadFailed(str(body["error"]))
        return [ReloadOutcome(**outcome) for outcome in body["outcomes"]]
    except (ValueError, KeyError, TypeError):
        raise ServerUnreachable(f"{path} did not answer like a dsdeploy server") from None
