"""The engine's build number against published llama.cpp advisories (a data file with the
CVE record of each): a GGUF parser overflow turns a downloaded model into code execution."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from dsdeploy.doctor.finding import Finding, ok

BUILD = re.compile(r"^(?:(\d+) \(|.*\(build (\d+)\b)")
"""'6341 (b66df9d9)' from llama.cpp releases; '0.5.0-dev (build 12, commit …)' from trees
built through llama-cpp-python's CMake."""


@dataclass(frozen=True)
class Advisory:
    id: str
    ghsa: str
    fixed_build: int
    summary: str
    source: str


def load_advisories() -> list[Advisory]:
    text = resources.files("dsdeploy.doctor").joinpath("llamacpp_advisories.json").read_text()
    return [Advisory(**entry) for entry in json.loads(text)["advisories"]]


def build_number(version: str) -> int | None:
    """The llama.cpp build number in a version line; None when it carries none (a source
    tree without git history builds as 'build 0')."""
    match = BUILD.match(version)
    number = int(match[1] or match[2]) if match else 0
    return number or None


def check_advisories(version: str, advisories: list[Advisory]) -> list[Finding]:
    build = build_number(version)
    if build is None:
        return [
            Finding(
                "engine-cves",
                "warn",
                f"llama-server {version} names no build number, so the {len(advisories)} known "
                "advisories cannot be ruled out by version",
                "use a llama.cpp release build (its --version prints `version: N (commit)`), or "
                "check its source against " + ", ".join(a.source for a in advisories),
            )
        ]
    open_ones = [a for a in advisories if build < a.fixed_build]
    if not open_ones:
        return [
            ok(
                "engine-cves",
                f"build {build}: none of the {len(advisories)} known advisories applies",
            )
        ]
    newest = max(a.fixed_build for a in open_ones)
    return [
        Finding(
            f"engine-cves:{a.id}",
            "fail",
            f"build {build} < b{a.fixed_build}: {a.id} ({a.ghsa}) {a.summary} — {a.source}",
            f"use llama.cpp b{newest} or newer (point DSDEPLOY_LLAMA_SERVER at it, or "
            "remove the old one from PATH and run `dsdeploy engine install`)",
        )
        for a in open_ones
    ]
