"""`dsdeploy keys` prints a key once and never again, lists keys without secrets, revokes
and rotates them, and answers bad input with one line; `dsdeploy serve` will not listen
beyond loopback with no key unless told it is on purpose."""

from __future__ import annotations

import re
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from dsdeploy.bench.launch import free_port
from dsdeploy.errors import ConfigError
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.exposure import auth_notice
from dsdeploy.security.keys import KeyStore
from dsdeploy.settings import SecuritySettings
from tests.conftest import run_cli, start_server

KEY = re.compile(r"dsk-([0-9a-f]{10})\.[A-Za-z0-9_-]{43}")


def store_of(home: Path) -> KeyStore:
    return KeyStore(open_database(sqlite_url(home / "data" / "security.db")))


def created(home: Path, *args: str) -> tuple[str, str]:
    done = run_cli(home, "keys", "create", *args)
    assert done.returncode == 0, done.stderr
    found = KEY.fullmatch(done.stdout.strip())
    assert found, done.stdout
    assert "will not be shown again" in done.stderr
    return found[1], found[0]


def test_create_prints_the_key_once_and_list_never_shows_a_secret(isolated_home: Path) -> None:
    key_id, presented = created(
        isolated_home,
        "--name",
        "team-a",
        "--models",
        "a",
        "--models",
        "b",
        "--rpm",
        "60",
        "--max-concurrent",
        "2",
        "--expires",
        "2099-01-01",
    )
    store = store_of(isolated_home)
    assert store.verify(presented) is not None
    store.close()
    listed = run_cli(isolated_home, "keys", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if key_id in line)
    for shown in ("team-a", "a, b", "60 rpm", "2 conc", "2099-01-01", "active"):
        assert shown in row
    assert presented.split(".", 1)[1] not in listed.stdout + listed.stderr


def test_revoke_and_rotate_change_which_secret_works(isolated_home: Path) -> None:
    key_id, first = created(isolated_home, "--name", "ci")
    rotated = run_cli(isolated_home, "keys", "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip()
    assert second.startswith(f"dsk-{key_id}.") and second != first
    revoked = run_cli(isolated_home, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stderr
    store = store_of(isolated_home)
    assert store.verify(first) is None and store.verify(second) is None
    store.close()
    assert "revoked" in run_cli(isolated_home, "keys", "list").stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("revoke", "0000000000"), "no API key has the id '0000000000'"),
        (("rotate", "nope"), "no API key has the id 'nope'"),
        (("create", "--name", "x", "--expires", "3y"), "neither a duration"),
        (("create", "--name", "x", "--expires", "2001-01-01"), "is in the past"),
        (("create", "--name", " "), "a key needs a name"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    isolated_home: Path, args: tuple[str, ...], said: str
) -> None:
    done = run_cli(isolated_home, "keys", *args)
    assert done.returncode != 0
    assert said in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_non_loopback_address_without_a_key(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: refusing to serve on 0.0.0.0 with no API key: create one with `dsdeploy keys "
        "create --name NAME`, listen on 127.0.0.1, or pass --insecure-no-auth"
    ]


@pytest.mark.engine
def test_serve_starts_open_on_a_public_address_when_told_to_and_warns(
    model_home: Path, tmp_path: Path
) -> None:
    server = start_server(
        model_home, tmp_path / "serve.log", "--host", "0.0.0.0", "--insecure-no-auth"
    )
    try:
        assert httpx.get(server.api + "/models").status_code == 200
    finally:
        assert server.stop() == 0
    log = (tmp_path / "serve.log").read_text()
    assert "WARNING: serving on 0.0.0.0 WITHOUT AUTHENTICATION" in log


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_without_keys_serves_open_with_a_notice(host: str) -> None:
    notice = auth_notice(host, has_active_keys=False, security=SecuritySettings())
    assert notice.startswith("no API key exists: serving without authentication")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "gateway.example.com"])
def test_any_other_address_without_keys_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="--insecure-no-auth"):
        auth_notice(host, has_active_keys=False, security=SecuritySettings())
    assert auth_notice(host, has_active_keys=True, security=SecuritySettings()).startswith(
        "API keys required"
    )
    required = SecuritySettings(require_keys=True)
    assert "every request is refused" in auth_notice(host, False, required)


@pytest.mark.engine
def test_a_served_gateway_takes_keys_from_the_official_clients_and_ps(
    model_home: Path, tmp_path: Path, isolated_home: Path
) -> None:
    """Keys in a database of the test's own (``DSDEPLOY_DB_URL``): the shared model home
    stays without keys for the other tests."""
    db_url = sqlite_url(tmp_path / "keys.db")
    store = KeyStore(open_database(db_url))
    _, presented = store.create("sdk")
    _, admin = store.create("operator", scope="admin")
    store.close()
    server = start_server(model_home, tmp_path / "serve.log", DSDEPLOY_DB_URL=db_url)
    try:
        assert httpx.get(server.api + "/models").status_code == 401
        with openai.OpenAI(base_url=server.api, api_key=presented, max_retries=0) as client:
            assert [model.id for model in client.models.list()] == ["smollm2"]
        with anthropic.Anthropic(
            base_url=server.base_url, api_key=presented, max_retries=0
        ) as client:
            message = client.messages.create(
                model="smollm2", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
            )
            assert message.content
        wrong = openai.OpenAI(base_url=server.api, api_key="dsk-wrong", max_retries=0)
        with wrong, pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        refused = run_cli(isolated_home, "ps", "--url", server.base_url)
        assert refused.returncode == 1 and "wants an API key" in refused.stderr
        user = run_cli(isolated_home, "ps", "--url", server.base_url, DSDEPLOY_API_KEY=presented)
        assert user.returncode == 1 and "needs an admin API key" in user.stderr
        shown = run_cli(isolated_home, "ps", "--url", server.base_url, DSDEPLOY_API_KEY=admin)
        assert shown.returncode == 0 and "smollm2" in shown.stdout
    finally:
        assert server.stop() == 0
