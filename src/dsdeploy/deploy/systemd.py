"""``deploy systemd``: one hardened unit for one machine. A dynamic user with no
capabilities, a read-only system, the weights key (and TLS key) as credentials, the
plan's memory as ``MemoryMax``, and ``systemctl reload`` as dsdeploy's graceful reload."""

from __future__ import annotations

from pathlib import Path

from dsdeploy.deploy.probes import stop_grace_s
from dsdeploy.deploy.spec import DeploySpec
from dsdeploy.deploy.templating import render
from dsdeploy.security.weights_key import CREDENTIAL

DEFAULT_BIN = Path("/opt/dsdeploy/bin/dsdeploy")
"""dsdeploy's launcher in its own virtualenv (python3 -m venv /opt/dsdeploy)."""


def unit(spec: DeploySpec, bin_path: Path = DEFAULT_BIN) -> str:
    tls = spec.tls_files
    pairs = [("tls-cert", tls[0]), ("tls-key", tls[1])] if tls else []
    return render(
        "dsdeploy.service.j2",
        spec=spec,
        bin=bin_path,
        stop_s=stop_grace_s(spec),
        credential=CREDENTIAL,
        tls=pairs,
    )


def systemd_files(spec: DeploySpec, bin_path: Path = DEFAULT_BIN) -> dict[str, str]:
    return {"dsdeploy.service": unit(spec, bin_path)}
