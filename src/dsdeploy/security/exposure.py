"""Whether a server may start without API keys: only where nobody else can reach it.

On loopback with no key the gateway serves open, as a first run on a laptop should; on
any other address it refuses to start until a key exists, unless the operator says
``--insecure-no-auth`` and gets a loud warning. The first key created turns keys on.
"""

from __future__ import annotations

import ipaddress

from dsdeploy.errors import ConfigError
from dsdeploy.settings import SecuritySettings

CREATE_HINT = "`dsdeploy keys create --name NAME`"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def auth_notice(host: str, has_active_keys: bool, security: SecuritySettings) -> str:
    """The line to print about authentication at start; ``ConfigError`` when serving
    ``host`` without a key would be open to the network."""
    if has_active_keys:
        return "API keys required (manage them with `dsdeploy keys`)"
    if security.require_keys:
        return (
            f"API keys required and none exists yet: every request is refused until {CREATE_HINT}"
        )
    if is_loopback(host):
        return (
            f"no API key exists: serving without authentication on {host} only; "
            f"create one with {CREATE_HINT} to require keys"
        )
    if security.insecure_no_auth:
        return (
            f"WARNING: serving on {host} WITHOUT AUTHENTICATION (--insecure-no-auth): anyone "
            f"who can reach this address can use it; create a key with {CREATE_HINT}"
        )
    raise ConfigError(
        f"refusing to serve on {host} with no API key: create one with {CREATE_HINT}, "
        "listen on 127.0.0.1, or pass --insecure-no-auth"
    )
