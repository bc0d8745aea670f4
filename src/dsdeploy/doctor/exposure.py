"""Whether the configured gateway would be open to the network without keys: the same rule
``serve`` applies at start, asked before anyone starts it."""

from __future__ import annotations

from dsdeploy.doctor.finding import Finding, ok
from dsdeploy.errors import ConfigError
from dsdeploy.security.exposure import CREATE_HINT, auth_notice, is_loopback
from dsdeploy.settings import SecuritySettings


def check_exposure(host: str, has_active_keys: bool, security: SecuritySettings) -> list[Finding]:
    try:
        notice = auth_notice(host, has_active_keys, security)
    except ConfigError as refused:
        return [Finding("exposure", "fail", str(refused), f"run {CREATE_HINT}")]
    if not has_active_keys and not security.require_keys and not is_loopback(host):
        return [Finding("exposure", "fail", notice, f"run {CREATE_HINT}")]
    return [ok("exposure", notice)]
