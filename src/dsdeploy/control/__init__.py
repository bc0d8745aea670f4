"""The control socket: how `dsdeploy reload` reaches the server running for a data folder.

A Unix socket, ``<data dir>/control.sock``, mode 0600 in a folder other users cannot write:
as with docker.sock or supervisorctl, the filesystem is the authentication. It is served by
a small app of its own in the server's event loop, never on the API's port.
"""

from __future__ import annotations

import socket
from pathlib import Path

SOCKET_NAME = "control.sock"


def control_socket(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


def answers(path: Path) -> bool:
    """Whether a server is listening on the socket (a killed one's socket refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
