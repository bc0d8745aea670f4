"""Operators' commands join the audit chain: each key created, rotated or revoked, weights
key made, model encrypted, decrypted, pulled or removed leaves an admin record naming the
action, what it acted on and the OS user — never a key's secret or the weights key — and
`dsdeploy audit verify` still finds the chain whole. Through the real CLI."""

from __future__ import annotations

import os
import pwd
import re
import sqlite3
from pathlib import Path

from tests.conftest import run_cli
from tests.hub_models import tiny_gguf

KEY = re.compile(r"dsk-([0-9a-f]{10})\.([A-Za-z0-9_-]{43})")


def cli(home: Path, *args: str) -> str:
    done = run_cli(home, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_admin_commands_leave_records_that_name_action_and_user_but_no_secret(
    isolated_home: Path, tmp_path: Path
) -> None:
    home = isolated_home
    created = KEY.fullmatch(cli(home, "keys", "create", "--name", "ops", "--admin").strip())
    assert created
    key_id = created[1]
    listed = next(line for line in cli(home, "keys", "list").splitlines() if key_id in line)
    assert "admin" in listed
    rotated = KEY.fullmatch(cli(home, "keys", "rotate", key_id).strip())
    assert rotated
    cli(home, "keys", "revoke", key_id)
    cli(home, "keygen-weights")
    weights_key = (home / "config" / "weights.key").read_text().strip()
    cli(home, "pull", str(tiny_gguf(tmp_path / "tiny.gguf")), "--name", "tiny")
    cli(home, "encrypt", "tiny")
    cli(home, "decrypt", "tiny")
    cli(home, "models", "rm", "tiny")
    cli(home, "models", "gc")

    verified = run_cli(home, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit chain intact" in verified.stderr

    database = home / "data" / "audit.db"
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT action, subject, actor FROM audit_records WHERE kind = 'admin' ORDER BY seq"
        ).fetchall()
    assert [action for action, _, _ in rows] == [
        "key.created",
        "key.rotated",
        "key.revoked",
        "weights.key_created",
        "model.pulled",
        "weights.encrypted",
        "weights.decrypted",
        "model.removed",
        "models.gc",
    ]
    assert {actor for _, _, actor in rows} == {pwd.getpwuid(os.geteuid()).pw_name}
    subjects = dict((action, subject) for action, subject, _ in rows)
    assert subjects["key.created"] == f"{key_id} (admin) ops"
    assert subjects["key.rotated"] == subjects["key.revoked"] == key_id
    assert subjects["model.removed"] == "tiny"
    assert subjects["weights.encrypted"].startswith("tiny (weights key ")
    stored = b"".join(path.read_bytes() for path in database.parent.glob("audit.db*"))
    for secret in (created[2], rotated[2], weights_key):
        assert secret.encode() not in stored
