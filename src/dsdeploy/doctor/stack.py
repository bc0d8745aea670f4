"""The Python serving stack: torch, transformers and vLLM agreeing with each other, and
transformers knowing each stored checkpoint's architecture.

What each package needs of torch is read from the installed package's own metadata
(its ``Requires-Dist``), the one source that cannot drift from what is installed."""

from __future__ import annotations

import importlib
import importlib.util
import json
import runpy
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from dsdeploy.doctor.finding import Finding, ok
from dsdeploy.store import Store

Versions = dict[str, str]


def installed(names: tuple[str, ...] = ("torch", "transformers", "vllm")) -> Versions:
    found: Versions = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def torch_build() -> tuple[str, str | None] | None:
    """torch's version and the CUDA it was built for, from its generated ``version.py``
    alone: importing torch itself takes seconds."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    values = runpy.run_path(str(Path(next(iter(spec.submodule_search_locations))) / "version.py"))
    return str(values["__version__"]), values.get("cuda")


def torch_requirements(package: str) -> list[Requirement]:
    """The torch requirements a package declares for a plain install or its torch extra."""
    wanted: list[Requirement] = []
    for line in metadata.requires(package) or []:
        requirement = Requirement(line)
        if requirement.name != "torch":
            continue
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": "torch"}):
            wanted.append(requirement)
    return wanted


def check_torch_pins(
    versions: Versions, requirements: Callable[[str], list[Requirement]] = torch_requirements
) -> list[Finding]:
    """vLLM pins one torch release (its CUDA kernels are compiled against it); transformers
    sets a minimum. A mismatch imports fine and fails later, at the first kernel call."""
    torch = versions.get("torch")
    findings: list[Finding] = []
    for package in ("transformers", "vllm"):
        if package not in versions:
            continue
        check = f"{package}-torch"
        for requirement in requirements(package):
            spec = str(requirement.specifier) or "any version"
            if torch is None:
                findings.append(
                    Finding(
                        check,
                        "warn",
                        f"{package} {versions[package]} needs torch {spec}; torch is not installed",
                        f"pip install 'torch{requirement.specifier}'",
                    )
                )
            elif not requirement.specifier.contains(Version(torch), prereleases=True):
                findings.append(
                    Finding(
                        check,
                        "fail",
                        f"{package} {versions[package]} needs torch {spec}, torch {torch} is "
                        "installed",
                        f"pip install 'torch{requirement.specifier}' (or a {package} release "
                        f"made for torch {torch})",
                    )
                )
            else:
                findings.append(
                    ok(check, f"{package} {versions[package]} needs torch {spec}: {torch}")
                )
    if not versions:
        findings.append(
            ok(
                "python-stack",
                "no torch, transformers or vLLM installed (GGUF models need none of them)",
            )
        )
    return findings


def stored_model_types(store: Store) -> dict[str, str]:
    """Stored safetensors checkpoints → the ``model_type`` their config.json declares."""
    types: dict[str, str] = {}
    for manifest in store.manifests_all():
        config = next((f for f in manifest.files if f.path == "config.json"), None)
        if manifest.format != "safetensors" or config is None:
            continue
        blob = store.blob_path(config.sha256)
        if blob.is_file():
            types[manifest.name] = str(json.loads(blob.read_text()).get("model_type", ""))
    return types


def known_model_types() -> set[str] | None:
    """Architectures the installed transformers can build; None when it is not installed."""
    try:
        auto = importlib.import_module("transformers.models.auto.configuration_auto")
    except ImportError:
        return None
    return set(auto.CONFIG_MAPPING_NAMES)


def check_model_types(
    types: dict[str, str], known: Callable[[], set[str] | None] = known_model_types
) -> list[Finding]:
    if not types:
        return []
    names = known()
    version = installed(("transformers",)).get("transformers", "")
    if names is None:
        return [
            Finding(
                "model-types",
                "warn",
                "safetensors models are stored ("
                + ", ".join(sorted(types))
                + ") but transformers is not installed",
                "pip install 'dsdeploy[convert]'",
            )
        ]
    findings: list[Finding] = []
    for model, model_type in sorted(types.items()):
        check = f"model-type:{model}"
        if model_type in names:
            findings.append(ok(check, f"{model_type} is known to transformers {version}"))
        else:
            findings.append(
                Finding(
                    check,
                    "fail",
                    f"transformers {version} does not know model_type {model_type!r}",
                    "pip install -U transformers (a release that lists "
                    f"{model_type!r} in its CONFIG_MAPPING)",
                )
            )
    return findings
