"""`dsdeploy doctor` on this machine: structured findings, an exit code that follows them,
and `--fix` applying only the safe fixes."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from dsdeploy.doctor.finding import Finding, exit_code, guarded
from tests.conftest import run_cli


def findings_of(stdout: str) -> list[dict[str, str | None]]:
    findings: list[dict[str, str | None]] = json.loads(stdout)
    return findings


def test_doctor_reports_every_finding_with_a_fix_unless_ok_and_exits_by_the_worst(
    isolated_home: Path,
) -> None:
    done = run_cli(isolated_home, "doctor", "--json")
    findings = findings_of(done.stdout)
    checks = {f["check"] for f in findings}
    assert {"os", "python", "data-dir", "disk", "memory", "port", "engine", "gpu"} <= checks
    assert {"permissions", "weights-permissions"} <= checks
    for finding in findings:
        assert set(finding) == {"check", "status", "found", "fix"}
        assert finding["status"] in {"ok", "warn", "fail"}
        assert (finding["fix"] is None) == (finding["status"] == "ok"), finding
    worst = {"ok": 0, "warn": 1, "fail": 2}
    assert done.returncode == max(worst[str(f["status"])] for f in findings), done.stderr


def test_doctor_table_names_each_check_and_its_fix(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "doctor", COLUMNS="200")
    assert "status" in done.stdout and "fix" in done.stdout
    assert "data-dir" in done.stdout
    assert done.returncode in {0, 1, 2}


def test_fix_creates_the_missing_folders_and_checks_again(isolated_home: Path) -> None:
    assert not isolated_home.exists()
    before = findings_of(run_cli(isolated_home, "doctor", "--json").stdout)
    assert any(f["check"] == "config-dir" and f["status"] == "warn" for f in before)
    done = run_cli(isolated_home, "doctor", "--json", "--fix")
    assert f"created {isolated_home / 'config'}" in done.stderr
    after = findings_of(done.stdout)
    assert [f for f in after if f["check"].endswith("-dir") and f["status"] != "ok"] == []
    assert stat.S_IMODE((isolated_home / "config").stat().st_mode) == 0o700


def test_fix_makes_a_world_readable_keys_database_private(isolated_home: Path) -> None:
    database = isolated_home / "data" / "keys.db"
    database.parent.mkdir(parents=True, mode=0o700)
    database.write_bytes(b"SQLite format 3\x00")
    database.chmod(0o644)
    before = run_cli(isolated_home, "doctor", "--json")
    failing = [f for f in findings_of(before.stdout) if f["check"] == "permissions"]
    assert failing[0]["status"] == "fail" and failing[0]["fix"] == f"chmod 600 {database}"
    assert before.returncode == 2
    done = run_cli(isolated_home, "doctor", "--json", "--fix")
    assert f"chmod 600 {database}" in done.stderr
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    after = [f for f in findings_of(done.stdout) if f["check"] == "permissions"]
    assert [f["status"] for f in after] == ["ok"]


def test_an_engine_killed_by_sigill_fails_with_the_rebuild_command(
    isolated_home: Path, tmp_path: Path
) -> None:
    engine = tmp_path / "llama-server"
    engine.write_text("#!/bin/sh\nkill -ILL $$\n")
    engine.chmod(0o755)
    done = run_cli(isolated_home, "doctor", "--json", DSDEPLOY_LLAMA_SERVER=str(engine))
    runs = next(f for f in findings_of(done.stdout) if f["check"] == "engine-runs")
    assert runs["status"] == "fail"
    assert "SIGILL" in str(runs["found"])
    assert runs["fix"] == "dsdeploy engine install --rebuild"
    libs = next(f for f in findings_of(done.stdout) if f["check"] == "libs:engine")
    assert libs["status"] == "ok" and "not an ELF file" in str(libs["found"])
    assert done.returncode == 2


def test_a_check_that_raises_becomes_a_warning_naming_it() -> None:
    def broken() -> list[Finding]:
        raise RuntimeError("boom")

    [finding] = guarded("port", broken)
    assert finding.status == "warn"
    assert "port" in finding.found and "boom" in finding.found
    assert finding.fix is not None


def test_exit_code_is_that_of_the_worst_finding() -> None:
    ok = Finding("a", "ok", "fine")
    warn = Finding("b", "warn", "hm", "do x")
    fail = Finding("c", "fail", "bad", "do y")
    assert exit_code([ok]) == 0
    assert exit_code([ok, warn]) == 1
    assert exit_code([warn, fail, ok]) == 2


def test_doctor_does_not_touch_anything_without_fix(isolated_home: Path) -> None:
    run_cli(isolated_home, "doctor", "--json")
    assert not (isolated_home / "config").exists()


def test_the_configured_gateway_port_is_the_one_checked(isolated_home: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_cli(isolated_home, "doctor", "--json", DSDEPLOY_PORT=str(port))
    [finding] = [f for f in findings_of(done.stdout) if f["check"] == "port"]
    assert finding["status"] == "fail"
    assert f"port {port}" in str(finding["found"]) and f"pid {os.getpid()}" in str(finding["found"])
    assert done.returncode == 2


def exposure_of(home: Path, **env: str) -> dict[str, object]:
    done = run_cli(home, "doctor", "--json", **env)
    [finding] = [f for f in findings_of(done.stdout) if f["check"] == "exposure"]
    return finding


def test_a_public_address_without_keys_fails_until_the_printed_fix_creates_one(
    isolated_home: Path,
) -> None:
    assert exposure_of(isolated_home)["status"] == "ok"  # loopback: open by design
    public = {"DSDEPLOY_HOST": "0.0.0.0"}
    finding = exposure_of(isolated_home, **public)
    assert finding["status"] == "fail"
    assert finding["fix"] == "run `dsdeploy keys create --name NAME`"
    assert run_cli(isolated_home, "keys", "create", "--name", "ops").returncode == 0
    assert exposure_of(isolated_home, **public)["status"] == "ok"
    insecure = exposure_of(isolated_home / "other", DSDEPLOY_INSECURE_NO_AUTH="1", **public)
    assert insecure["status"] == "fail" and "WITHOUT AUTHENTICATION" in str(insecure["found"])


@pytest.mark.engine
def test_the_engine_dsdeploy_builds_has_the_fix_of_every_known_advisory(
    model_home: Path,
) -> None:
    done = run_cli(model_home, "doctor", "--json")
    cves = [f for f in findings_of(done.stdout) if str(f["check"]).startswith("engine-cves")]
    assert [f["status"] for f in cves] == ["ok"], cves
    assert "the fix of each of the 4 known advisories is in its source" in str(cves[0]["found"])
