"""Who else on the machine can read the secrets or change the weights.

Key and audit databases (SQLite, with their WAL and shared-memory files) and key files
must be 0600 and the folders holding them 0700: group- or world-readable, any local user
could copy the key hashes and the audit trail. Weights that others may write could be
swapped for a malicious GGUF that the next engine start loads."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from dsdeploy.doctor.finding import Finding, Repair, ok

SECRET_SUFFIXES = (".db", ".db-wal", ".db-shm", ".sqlite", ".key", ".pem")
SKIP = ("models", "logs")
"""Folders of the data dir that hold no secrets (the weights are checked on their own)."""


def secret_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in root.rglob("*"):
        relative = path.relative_to(root).parts
        if relative and relative[0] in SKIP:
            continue
        if path.is_file() and not path.is_symlink() and path.name.endswith(SECRET_SUFFIXES):
            yield path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def check_secrets(data: Path, config: Path) -> list[Finding]:
    findings: list[Finding] = []
    for folder in (data, config):
        if folder.is_dir() and mode(folder) & 0o077 and any(secret_files(folder)):
            findings.append(
                Finding(
                    "permissions",
                    "fail",
                    f"{folder} holds secrets and is open to others (mode {mode(folder):o})",
                    f"chmod 700 {folder}",
                    Repair("chmod", folder, 0o700),
                )
            )
        for path in secret_files(folder):
            if mode(path) & 0o077:
                findings.append(
                    Finding(
                        "permissions",
                        "fail",
                        f"{path} is readable or writable by others (mode {mode(path):o})",
                        f"chmod 600 {path}",
                        Repair("chmod", path, 0o600),
                    )
                )
    return findings or [ok("permissions", "key and audit files are private to this user")]


def check_weights(models: Path) -> list[Finding]:
    blobs = models / "blobs"
    if not blobs.is_dir():
        return [ok("weights-permissions", "no stored weights yet")]
    findings = [
        Finding(
            "weights-permissions",
            "fail",
            f"{path} is writable by everyone (mode {mode(path):o}): anyone here could "
            "replace the weights",
            f"chmod {mode(path) & ~0o022:o} {path}",
            Repair("chmod", path, mode(path) & ~0o022),
        )
        for path in (blobs, *blobs.iterdir())
        if mode(path) & 0o002
    ]
    return findings or [
        ok("weights-permissions", "stored weights are writable only by their owner")
    ]
