"""``dsdeploy deploy`` end to end: the files it writes, and one clear line with a non-zero
exit for what it cannot do (unknown target, a missing secret, a plan one machine cannot
serve asked of a one-machine target, a model nothing holds)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_k8s_spreads_a_671b_over_the_nodes_it_needs(isolated_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    done = run_cli(
        isolated_home, "deploy", "k8s", "deepseek-r1", "--gpu", "RTX 4090", "--gpus", "4",
        "--ram", "32G", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all((out / "dsdeploy.yaml").read_text()))
    group = next(d for d in docs if d["kind"] == "LeaderWorkerSet")
    nodes = group["spec"]["leaderWorkerTemplate"]["size"]
    assert nodes > 1
    leader = group["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert {"name": "DSDEPLOY_NODES", "value": str(nodes)} in leader["env"]
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert stat.S_IMODE((out / "secret.yaml").stat().st_mode) == 0o600


def test_systemd_unit_is_written_for_a_cpu_plan(isolated_home: Path, tmp_path: Path) -> None:
    done = run_cli(isolated_home, "deploy", "systemd", "--ram", "8G", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    unit = (tmp_path / "dsdeploy.service").read_text()
    assert "ExecStart=/opt/dsdeploy/bin/dsdeploy serve smollm2" in unit


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["deploy", "helm"], "unknown deploy target 'helm'"),
        (["deploy", "compose", "--weights-key", "/no/such/key"], "--weights-key /no/such/key"),
        (
            ["deploy", "systemd", "deepseek-r1", "--gpu", "H100", "--gpus", "8", "--nodes", "2"],
            "use `dsdeploy deploy k8s`",
        ),
        (["deploy", "docker", "deepseek-r1", "--ram", "16G"], "does not fit this machine"),
        (["deploy", "k8s", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_input_is_one_line_and_a_failure(
    isolated_home: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    done = run_cli(isolated_home, *args, "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    assert says in one_error_line(done.stderr)
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_cannot_be_made_is_one_line(isolated_home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli(isolated_home, "deploy", "compose", "--ram", "8G", "--out", str(blocker / "x"))
    assert done.returncode == 1
    assert "cannot write to" in one_error_line(done.stderr)
