"""How a container checks the gateway: its own probes, over loopback (always an allowed
host), with Python since slim images have no curl."""

from __future__ import annotations

from dsdeploy.deploy.spec import DeploySpec


def healthcheck_code(spec: DeploySpec, path: str = "/health/live") -> str:
    url = f"{spec.scheme}://127.0.0.1:{spec.port}{path}"
    if spec.tls:  # the certificate names the public host, not 127.0.0.1
        return (
            "import ssl, urllib.request as r; "
            f"r.urlopen('{url}', timeout=4, context=ssl._create_unverified_context())"
        )
    return f"import urllib.request as r; r.urlopen('{url}', timeout=4)"


def stop_grace_s(spec: DeploySpec) -> int:
    """Time to stop: the drain timeout for requests in flight plus the engine's own stop."""
    return int(spec.drain_timeout_s) + 15
