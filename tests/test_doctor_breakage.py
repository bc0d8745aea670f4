"""Each pitfall, prepared for real: the check finds it, and running the fix it prints
clears it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsdeploy.cpu_isa import decide
from dsdeploy.doctor import advisories, disk, engine, libraries, memory, permissions, ports, stack
from dsdeploy.doctor.finding import Finding
from dsdeploy.doctor.gpu import DriverInfo, check_torch_cuda
from dsdeploy.hardware import Gpu
from dsdeploy.planner.placement import Machine
from dsdeploy.settings import EngineSettings
from dsdeploy.store import Store
from tests.conftest import run_cli
from tests.test_engine_isa import SPR_METAL, SPR_VM, ZEN3


def run_fix(finding: Finding) -> None:
    """Run a fix exactly as printed (a shell command between backticks, or the whole fix)."""
    assert finding.fix is not None
    command = finding.fix.split("`")[1] if "`" in finding.fix else finding.fix
    subprocess.run(command, shell=True, check=True)


def statuses(findings: list[Finding]) -> list[str]:
    return [f.status for f in findings]


# --- the gateway port -------------------------------------------------------------------


def test_a_taken_port_fails_naming_the_listener_and_frees_when_it_stops() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    [taken] = ports.check_port("127.0.0.1", port)
    assert taken.status == "fail"
    assert f"pid {os.getpid()}" in taken.found
    assert f"--port {port + 1}" in str(taken.fix)
    holder.close()  # the fix: stop the process holding it
    assert statuses(ports.check_port("127.0.0.1", port)) == ["ok"]


# --- the data folder ---------------------------------------------------------------------

READ_ONLY_SCRIPT = """
import json, subprocess, sys
from pathlib import Path
from dsdeploy.doctor.disk import check_folder
folder = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
[before] = check_folder("data", folder)
fix = before.fix.split("`")[1]
subprocess.run(fix, shell=True, check=True)
[after] = check_folder("data", folder)
print(json.dumps({"before": before.as_dict(), "after": after.as_dict()}))
"""


def test_a_read_only_data_dir_fails_and_remounting_it_read_write_clears_it(
    tmp_path: Path,
) -> None:
    """Root ignores chmod, so the folder is a read-only tmpfs in a private mount namespace."""
    folder = tmp_path / "data"
    folder.mkdir()
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            sys.executable,
            "-c",
            READ_ONLY_SCRIPT,
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["before"]["status"] == "fail"
    assert "Read-only file system" in result["before"]["found"]
    assert f"mount -o remount,rw {folder}" in result["before"]["fix"]
    assert result["after"]["status"] == "ok"


def test_a_file_where_the_data_dir_should_be_fails_and_moving_it_clears_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    folder.write_text("not a folder")
    [blocked] = disk.check_folder("data", folder)
    assert blocked.status == "fail" and "is a file" in blocked.found
    run_fix(blocked)
    [missing] = disk.check_folder("data", folder)
    assert missing.status == "warn" and missing.repair is not None
    missing.repair.apply()
    assert statuses(disk.check_folder("data", folder)) == ["ok"]


# --- secrets and weights -----------------------------------------------------------------


def test_a_world_readable_keys_database_fails_and_chmod_600_clears_it(tmp_path: Path) -> None:
    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir(mode=0o700)
    config.mkdir(mode=0o700)
    database = data / "keys.db"
    database.write_bytes(b"")
    database.chmod(0o644)
    [finding] = permissions.check_secrets(data, config)
    assert finding.status == "fail" and finding.fix == f"chmod 600 {database}"
    run_fix(finding)
    assert statuses(permissions.check_secrets(data, config)) == ["ok"]


def test_an_open_folder_holding_secrets_fails_and_chmod_700_clears_it(tmp_path: Path) -> None:
    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir(mode=0o700)
    config.mkdir()
    config.chmod(0o755)
    (config / "gateway.key").write_bytes(b"k")
    (config / "gateway.key").chmod(0o600)
    [finding] = permissions.check_secrets(data, config)
    assert finding.fix == f"chmod 700 {config}"
    run_fix(finding)
    assert statuses(permissions.check_secrets(data, config)) == ["ok"]


def test_world_writable_weights_fail_and_the_chmod_clears_it(tmp_path: Path) -> None:
    blob = tmp_path / "models" / "blobs" / "sha256-00"
    blob.parent.mkdir(parents=True, mode=0o755)
    blob.write_bytes(b"weights")
    blob.chmod(0o666)
    [finding] = permissions.check_weights(tmp_path / "models")
    assert finding.status == "fail" and finding.fix == f"chmod 644 {blob}"
    run_fix(finding)
    assert statuses(permissions.check_weights(tmp_path / "models")) == ["ok"]


# --- the engine binary -------------------------------------------------------------------


def fake_engine(folder: Path, body: str) -> Path:
    binary = folder / "llama-server"
    binary.write_text("#!/bin/sh\n" + body + "\n")
    binary.chmod(0o755)
    return binary


def test_an_engine_dying_by_sigill_is_explained_with_the_rebuild(tmp_path: Path) -> None:
    finding, version = engine.run_version(fake_engine(tmp_path, "kill -ILL $$"))
    assert finding.status == "fail" and version is None
    assert "SIGILL" in finding.found and "instruction" in finding.found
    assert finding.fix == "dsdeploy engine install --rebuild"


def test_an_engine_in_a_cve_range_fails_and_a_fixed_build_clears_it(tmp_path: Path) -> None:
    known = advisories.load_advisories()
    _, old = engine.run_version(fake_engine(tmp_path, 'echo "version: 5700 (1a2b3c4)"'))
    assert old == "5700 (1a2b3c4)"
    failing = advisories.check_advisories(old, known)
    assert {f.check for f in failing} == {
        "engine-cves:CVE-2025-52566",
        "engine-cves:CVE-2026-27940",
    }
    assert all(f.status == "fail" and "b8146 or newer" in str(f.fix) for f in failing)
    _, fixed = engine.run_version(fake_engine(tmp_path, 'echo "version: 8146 (5d6e7f8)"'))
    assert fixed is not None
    assert statuses(advisories.check_advisories(fixed, known)) == ["ok"]


def test_a_version_without_build_number_cannot_rule_advisories_out() -> None:
    [finding] = advisories.check_advisories(
        "0.5.0-dev (build 0, commit unknown)", advisories.load_advisories()
    )
    assert finding.status == "warn"
    assert advisories.build_number("0.5.0-dev (build 8200, commit abc)") == 8200


def source_with_fixes(tree: Path, advisories_in: list[advisories.Advisory]) -> Path:
    for advisory in advisories_in:
        path = tree / advisory.fix_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(f"// ...\n{advisory.fix_text}\n")
    return tree


def test_a_build_0_tree_with_every_fix_in_its_source_rules_the_advisories_out(
    tmp_path: Path,
) -> None:
    known = advisories.load_advisories()
    tree = source_with_fixes(tmp_path / "source-0.3.36", known)
    findings = advisories.check_advisories("0.5.0-dev (build 0, commit unknown)", known, tree)
    assert statuses(findings) == ["ok"]


def test_a_build_0_tree_missing_one_fix_fails_naming_that_advisory(tmp_path: Path) -> None:
    known = advisories.load_advisories()
    tree = source_with_fixes(tmp_path / "source-old", [a for a in known if a.fixed_build < 8000])
    [finding] = advisories.check_advisories("0.5.0-dev (build 0, commit unknown)", known, tree)
    assert finding.check == "engine-cves:CVE-2026-27940" and finding.status == "fail"
    assert "ggml/src/gguf.cpp" in finding.found and "b8146" in str(finding.fix)


def test_the_source_tree_of_a_dsdeploy_build_is_found_beside_it(tmp_path: Path) -> None:
    build = tmp_path / "0.3.36-p1234abcd-cpu-x86_64-5ce76e4aea8d"
    (build / "bin").mkdir(parents=True)
    binary = build / "bin" / "llama-server"
    binary.write_text("")
    info = {"backend": "cpu"}
    assert engine.source_tree_of(binary, info) is None  # not unpacked (or removed)
    (tmp_path / "source-0.3.36-p1234abcd").mkdir()
    assert engine.source_tree_of(binary, info) == tmp_path / "source-0.3.36-p1234abcd"
    assert engine.source_tree_of(binary, None) is None


def test_every_advisory_cites_its_cve_record() -> None:
    for advisory in advisories.load_advisories():
        assert advisory.source == f"https://www.cve.org/CVERecord?id={advisory.id}"
        assert advisory.ghsa.startswith("GHSA-") and advisory.fixed_build > 0


def build_info(enabled: list[str]) -> dict[str, object]:
    return {"isa": {"tag": "native", "enabled": enabled, "disabled": [], "reasons": []}}


def test_an_avx512_build_on_a_cpu_without_it_fails_and_a_rebuild_here_passes() -> None:
    [finding] = engine.check_isa(build_info(["avx", "avx512"]), ZEN3)
    assert finding.status == "fail" and "avx512" in finding.found
    assert finding.fix == "dsdeploy engine install --rebuild"
    rebuilt = decide(ZEN3)  # what the rebuild records in its info.json
    assert statuses(engine.check_isa(build_info(list(rebuilt.enabled)), ZEN3)) == ["ok"]


def test_an_amx_build_where_the_kernel_does_not_enable_amx_fails() -> None:
    amx_build = build_info(list(decide(SPR_METAL).enabled))
    assert "amx" in amx_build["isa"]["enabled"]  # type: ignore[index]
    [finding] = engine.check_isa(amx_build, SPR_VM)
    assert finding.status == "fail" and "amx" in finding.found and "18" in finding.found
    assert statuses(engine.check_isa(amx_build, SPR_METAL)) == ["ok"]
    assert statuses(engine.check_isa(build_info(list(decide(SPR_VM).enabled)), SPR_VM)) == ["ok"]


# --- C++ runtime symbol versions ---------------------------------------------------------

RUNTIME_C = "void old_sym(void) {}\nvoid new_sym(void) {}\n"
NEW_MAP = (
    "GLIBCXX_3.4.29 { global: old_sym; local: *; };\n"
    "GLIBCXX_3.4.30 { global: new_sym; } GLIBCXX_3.4.29;\n"
)
OLD_MAP = "GLIBCXX_3.4.29 { global: old_sym; local: *; };\n"
APP_C = "extern void new_sym(void);\nint main(void) { new_sym(); return 0; }\n"


def gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def runtimes(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny ``libstdc++.so.6`` defining GLIBCXX_3.4.30, an older one stopping at 3.4.29,
    and a binary linked against the newer one (so it needs GLIBCXX_3.4.30)."""
    (tmp_path / "runtime.c").write_text(RUNTIME_C)
    (tmp_path / "app.c").write_text(APP_C)
    folders = {}
    for name, script in (("new", NEW_MAP), ("old", OLD_MAP)):
        (tmp_path / f"{name}.map").write_text(script)
        folder = folders[name] = tmp_path / name
        folder.mkdir()
        gcc(
            "-shared",
            "-fPIC",
            "-Wl,-soname,libstdc++.so.6",
            f"-Wl,--version-script={tmp_path / f'{name}.map'}",
            tmp_path / "runtime.c",
            "-o",
            folder / "libstdc++.so.6",
        )
    app = tmp_path / "app"
    gcc(tmp_path / "app.c", f"-L{folders['new']}", "-l:libstdc++.so.6", "-o", app)
    return app, folders["old"], folders["new"]


def test_a_libstdcxx_without_the_needed_version_fails_like_the_loader_does(
    runtimes: tuple[Path, Path, Path],
) -> None:
    app, old, new = runtimes
    [finding] = libraries.check_binary(app, "engine", library_path=(old,), cache={})
    assert finding.status == "fail"
    assert "GLIBCXX_3.4.30" in finding.found and str(old / "libstdc++.so.6") in finding.found
    assert "libstdcxx-ng" in str(finding.fix) and "--rebuild" in str(finding.fix)
    loader = subprocess.run(
        [app], env={"LD_LIBRARY_PATH": str(old)}, capture_output=True, text=True, check=False
    )
    assert "GLIBCXX_3.4.30' not found" in loader.stderr  # the real loader agrees
    # The fix: a newer libstdc++ where the loader looks.
    [fixed] = libraries.check_binary(app, "engine", library_path=(new,), cache={})
    assert fixed.status == "ok" and "GLIBCXX_3.4.30" in fixed.found
    assert subprocess.run([app], env={"LD_LIBRARY_PATH": str(new)}, check=False).returncode == 0


def test_a_library_the_loader_cannot_find_fails(tmp_path: Path) -> None:
    (tmp_path / "extra.c").write_text("void extra(void) {}\n")
    (tmp_path / "app.c").write_text("extern void extra(void);\nint main(void) { extra(); }\n")
    gcc(
        "-shared",
        "-fPIC",
        "-Wl,-soname,libdoctorextra.so.1",
        tmp_path / "extra.c",
        "-o",
        tmp_path / "libdoctorextra.so.1",
    )
    gcc(tmp_path / "app.c", f"-L{tmp_path}", "-l:libdoctorextra.so.1", "-o", tmp_path / "app")
    [finding] = libraries.check_binary(tmp_path / "app", "engine", cache={})
    assert finding.status == "fail"
    assert "libdoctorextra.so.1, which the loader cannot find" in finding.found
    assert statuses(libraries.check_binary(tmp_path / "app", "engine", (tmp_path,), {})) == ["ok"]


def test_the_runtimes_of_this_machine_satisfy_this_python() -> None:
    """Python itself needs GLIBC versions, and the libc the loader picks defines them."""
    findings = libraries.check_binary(Path(sys.executable).resolve(), "python")
    assert statuses(findings) == ["ok"], findings


# --- the Python stack --------------------------------------------------------------------


def test_transformers_with_a_too_old_torch_fails_from_its_own_metadata() -> None:
    installed = stack.installed()
    if "transformers" not in installed:
        pytest.skip("transformers is not installed")
    [current] = stack.check_torch_pins(installed)
    assert current.status == "ok"
    [old] = stack.check_torch_pins(installed | {"torch": "1.13.1"})
    assert old.status == "fail" and "pip install 'torch>=" in str(old.fix)


def test_a_model_type_transformers_does_not_know_fails() -> None:
    findings = stack.check_model_types({"v3": "deepseek_v3", "odd": "no_such_architecture"})
    by_check = {f.check: f.status for f in findings}
    assert by_check == {"model-type:odd": "fail", "model-type:v3": "ok"}


H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 80 * 2**30, 80 * 2**30, (9, 0))


def test_torch_for_a_newer_cuda_than_the_driver_fails_unless_minor_compat_covers_it() -> None:
    driver_12_2 = DriverInfo((H100,), "535.104.05", "12.2")
    assert statuses(check_torch_cuda(driver_12_2, "12.1", "2.5.1")) == ["ok"]
    assert statuses(check_torch_cuda(driver_12_2, "12.8", "2.7.0")) == ["ok"]  # minor compat
    [too_new] = check_torch_cuda(driver_12_2, "13.0", "2.9.0")
    assert too_new.status == "fail" and "580" in too_new.found
    old_driver = DriverInfo((H100,), "470.82.01", "11.4")
    assert statuses(check_torch_cuda(old_driver, "12.1", "2.5.1")) == ["fail"]
    assert statuses(check_torch_cuda(DriverInfo((), "", "", "no NVML"), None, "2.5.1")) == ["ok"]


# --- memory and disk against a stored model -----------------------------------------------


@pytest.fixture(scope="module")
def stored_model(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The default model pulled once through the real CLI into a home of this module's own."""
    home = tmp_path_factory.mktemp("doctor-home")
    done = run_cli(home, "pull", "smollm2")
    assert done.returncode == 0, done.stderr[-2000:]
    return Store(home / "data" / "models")


def test_ram_below_what_serve_would_plan_fails_and_more_free_memory_clears_it(
    stored_model: Store,
) -> None:
    settings = EngineSettings()
    [short, _total] = memory.check_memory(
        stored_model, Machine(64 * 2**20, 2, 1e10), settings, 0, 0
    )
    assert short.check == "memory:smollm2" and short.status == "fail"
    assert "does not fit" in short.found and "DSDEPLOY_CTX_SIZE" in str(short.fix)
    # The fix: free memory (here, a machine with 2 GiB available).
    [planned, total] = memory.check_memory(
        stored_model, Machine(2 * 2**30, 2, 1e10), settings, 0, 0
    )
    assert planned.status == "ok" and "4 slots" in planned.found
    assert total.status == "ok"


def test_disk_space_is_compared_with_the_stored_models(stored_model: Store) -> None:
    [space] = disk.check_space(stored_model, stored_model.root)
    assert space.status == "ok" and "stored models take 0.09 GiB" in space.found


def test_a_world_writable_stored_blob_fails_and_the_printed_chmod_clears_it(
    stored_model: Store,
) -> None:
    [blob] = stored_model.blobs.iterdir()
    blob.chmod(0o666)
    try:
        [finding] = permissions.check_weights(stored_model.root)
        assert finding.status == "fail" and finding.fix == f"chmod 644 {blob}"
        run_fix(finding)
        assert statuses(permissions.check_weights(stored_model.root)) == ["ok"]
    finally:
        blob.chmod(0o444)


def test_a_build_records_the_extensions_it_may_execute() -> None:
    assert decide(ZEN3).enabled == ("avx",)
    assert decide(SPR_VM).enabled == ("avx", "avx512")
    assert decide(SPR_METAL).enabled == ("avx", "avx512", "amx")
    assert decide(SPR_METAL, conservative=True).enabled == ("avx",)
