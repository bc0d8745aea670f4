"""Deployment files rendered from three plans (CPU-only small model, one-GPU 7B, a 671B
spread over two 8 × H100 nodes) match their snapshots and pass real validators:
hadolint, the compose specification, systemd-analyze, the Kubernetes schemas.

Set UPDATE_SNAPSHOTS=1 to write the snapshots again after a deliberate change."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_support import validators
from tests.deploy_support.plans import (
    CASES,
    KEY_PLACEHOLDER,
    LINTED,
    ONE_MACHINE,
    render_all,
    spec_for,
)

SNAPSHOTS = Path(__file__).parent / "snapshots" / "deploy"
DSDEPLOY_BIN = Path(sys.executable).parent / "dsdeploy"


def rendered(case: str, tmp_path: Path, bin_path: Path | None = None) -> dict[str, str]:
    spec = spec_for(LINTED[case], tmp_path)
    files = render_all(spec, bin_path) if bin_path else render_all(spec)
    key = str((tmp_path / "weights.key").resolve())
    return {name: text.replace(key, KEY_PLACEHOLDER) for name, text in files.items()}


@pytest.mark.parametrize("case", CASES)
def test_rendered_files_match_their_snapshots(case: str, tmp_path: Path) -> None:
    files = rendered(case, tmp_path)
    folder = SNAPSHOTS / case
    if os.environ.get("UPDATE_SNAPSHOTS"):
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    stored = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(stored) == sorted(files)
    for name, text in files.items():
        assert text == stored[name], f"{case}/{name} changed; see UPDATE_SNAPSHOTS"


@pytest.mark.parametrize("case", ONE_MACHINE)
def test_dockerfiles_pass_hadolint(case: str, tmp_path: Path) -> None:
    for name, text in rendered(case, tmp_path).items():
        if name.endswith("Dockerfile"):
            path = tmp_path / "Dockerfile"
            path.write_text(text)
            assert validators.hadolint(path) == ""


@pytest.mark.parametrize("case", ONE_MACHINE)
def test_compose_files_follow_the_compose_specification(case: str, tmp_path: Path) -> None:
    text = rendered(case, tmp_path)["compose/compose.yaml"]
    assert validators.compose(text) == ""
    service = yaml.safe_load(text)["services"]["dsdeploy"]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service["deploy"]["resources"]["limits"]["memory"].endswith("M")


@pytest.mark.parametrize("case", ONE_MACHINE)
def test_systemd_units_verify_and_stay_hardened(case: str, tmp_path: Path) -> None:
    unit = tmp_path / "dsdeploy.service"
    unit.write_text(rendered(case, tmp_path, DSDEPLOY_BIN)["systemd/dsdeploy.service"])
    assert validators.systemd_verify(unit) == ""
    # systemd's own exposure score, 0 (locked down) to 10: the GPU unit opens /dev/nvidia*.
    assert validators.systemd_exposure(unit, threshold=20) == ""


@pytest.mark.parametrize("case", LINTED)
def test_kubernetes_manifests_pass_the_api_schemas(case: str, tmp_path: Path) -> None:
    files = rendered(case, tmp_path)
    manifests = {name: text for name, text in files.items() if name.startswith("k8s/")}
    assert manifests
    for name, text in manifests.items():
        assert validators.kubernetes_stream(text) == [], name


@pytest.mark.parametrize("case", LINTED)
def test_kubernetes_objects_refer_to_each_other(case: str, tmp_path: Path) -> None:
    """Service → pods, ServiceMonitor → Service and token, pods → Secret keys and PVC,
    budget → pods: the custom resources' own schemas are not bundled, their wiring is
    checked here."""
    files = rendered(case, tmp_path)
    documents = [
        doc
        for name, text in files.items()
        if name.startswith("k8s/")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    assert validators.dangling(documents) == []
    broken = [d for d in documents if d["kind"] != "Secret"]
    assert any("is not rendered" in p for p in validators.dangling(broken))


def test_validators_reject_broken_files(tmp_path: Path) -> None:
    """Each validator finds a planted fault, so a pass above means something."""
    files = rendered("cpu-smollm2", tmp_path, DSDEPLOY_BIN)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(files["docker/Dockerfile"].replace("USER 10001", "USER root"))
    assert "DL3002" in validators.hadolint(dockerfile)  # last user should not be root
    broken = files["compose/compose.yaml"].replace("read_only: true", "read_only: [true]")
    assert validators.compose(broken)
    unit = tmp_path / "dsdeploy.service"
    unit.write_text(files["systemd/dsdeploy.service"].replace(str(DSDEPLOY_BIN), "/nowhere/x"))
    assert "not executable" in validators.systemd_verify(unit)
    loose = files["systemd/dsdeploy.service"].replace("ProtectSystem=strict", "ProtectSystem=no")
    unit.write_text(loose.replace("CapabilityBoundingSet=\n", "").replace("PrivateTmp=yes", ""))
    assert validators.systemd_exposure(unit, threshold=20)
    manifests = files["k8s/dsdeploy.yaml"].replace("maxUnavailable: 0", "maxUnavailable: [0]")
    assert validators.kubernetes_stream(manifests)
