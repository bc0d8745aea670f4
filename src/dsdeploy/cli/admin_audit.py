"""Operators' commands that change what the gateway serves or who may use it (keys,
weights encryption, models pulled or removed) join the audit chain as admin records: the
action, what it acted on (a key's public id, a model's name; never a secret) and the OS
user who ran it."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dsdeploy.cli.audit import open_log
from dsdeploy.settings import Settings

SUBJECT_CHARS = 256
"""The audit table's ``subject`` column holds this many characters."""

Note = Callable[[str, str], None]
"""``note(action, subject)``: one admin record."""


def os_user() -> str:
    """The effective user's name from the password database (``$USER`` can be set to
    anything), or its uid when it has none (a container's arbitrary uid)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def ignore(action: str, subject: str) -> None:
    return None


@contextmanager
def admin_audit(settings: Settings) -> Iterator[Note]:
    """Opens the audit log before the command acts, so a database that cannot be reached
    stops it before anything changes, and yields ``note``; with auditing off
    (``DSDEPLOY_AUDIT=false``) ``note`` does nothing."""
    if not settings.security.audit:
        yield ignore
        return
    log = open_log(settings)
    actor = os_user()

    def note(action: str, subject: str) -> None:
        log.record_admin(action, subject[:SUBJECT_CHARS], actor)

    try:
        yield note
    finally:
        log.close()
