"""Where the key that encrypts weights at rest comes from, in order of preference:

1. a key file readable by its owner only (``--weights-key-file``, else ``weights.key`` in
   the config folder): one that others can read is refused, as ssh refuses such a key;
2. a systemd credential (``LoadCredential=dsdeploy-weights-key:…``), which systemd hands
   to the service alone, in memory;
3. ``DSDEPLOY_WEIGHTS_KEY``, with a warning: the environment is visible to the process's
   owner and to root, and is easily copied into logs and crash reports.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from dsdeploy.errors import WeightsKeyError
from dsdeploy.security.weights_crypto import KEY_BYTES, Kek
from dsdeploy.settings import SecuritySettings

log = logging.getLogger("dsdeploy.security.weights_key")

CREDENTIAL = "dsdeploy-weights-key"
DEFAULT_KEY_FILE = "weights.key"


def key_file(security: SecuritySettings, config_dir: Path) -> Path:
    return security.weights_key_file or config_dir / DEFAULT_KEY_FILE


def parse_key(text: str, origin: str) -> Kek:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise WeightsKeyError(
            f"the weights key from {origin} is not {KEY_BYTES * 2} hex digits; make one with "
            "`dsdeploy keygen-weights`"
        )
    return Kek(key, origin)


def read_private_file(path: Path) -> str:
    """The file's text, if only its owner (this user) can read or change it."""
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WeightsKeyError(
            f"the weights key file {path} is readable by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
        )
    if info.st_uid != os.geteuid():
        raise WeightsKeyError(
            f"the weights key file {path} belongs to another user; it must be this user's"
        )
    return path.read_text()


def load_kek(security: SecuritySettings, config_dir: Path) -> Kek:
    """The key-encryption key, from the most private source that has one."""
    path = key_file(security, config_dir)
    if security.weights_key_file is not None or path.is_file():
        if not path.is_file():
            raise WeightsKeyError(f"no weights key file at {path}; check --weights-key-file")
        return parse_key(read_private_file(path), str(path))
    if security.credentials_directory is not None:
        credential = security.credentials_directory / CREDENTIAL
        if credential.is_file():
            return parse_key(credential.read_text(), f"systemd credential {CREDENTIAL}")
    if security.weights_key is not None:
        log.warning(
            "the weights key comes from DSDEPLOY_WEIGHTS_KEY; a key file (mode 0600) or a "
            "systemd credential keeps it out of the environment"
        )
        return parse_key(security.weights_key.get_secret_value(), "DSDEPLOY_WEIGHTS_KEY")
    raise WeightsKeyError(
        f"no weights key: no key file at {path}, no systemd credential {CREDENTIAL}, and "
        "DSDEPLOY_WEIGHTS_KEY is unset; create one with `dsdeploy keygen-weights`"
    )


def create_key_file(path: Path) -> Kek:
    """A new random key in a new file of mode 0600; an existing key is never overwritten,
    since every file encrypted under it would become unreadable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WeightsKeyError(
            f"{path} already exists; keep it (weights encrypted under it need it), or give "
            "another --weights-key-file"
        ) from None
    kek = Kek(os.urandom(KEY_BYTES), str(path))
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(kek.key.hex() + "\n")
        out.flush()
        os.fsync(out.fileno())
    return kek
