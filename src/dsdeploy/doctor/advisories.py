"""The engine's build number against published llama.cpp advisories (a data file with the
CVE record of each): a GGUF parser overflow turns a downloaded model into code execution."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
    fix_file: str
    fix_text: str
    """A passage the fix added to ``fix_file``: a tree that holds it has the fix."""

    def fixed_in(self, tree: Path) -> bool:
        try:
            return self.fix_text in (tree / self.fix_file).read_text(errors="replace")
        except OSError:
            return False


def load_advisories() -> list[Advisory]:
    text = resources.files("dsdeploy.doctor").joinpath("llamacpp_advisories.json").read_text()
    advisories = []
    for entry in json.loads(text)["advisories"]:
        marker = entry.pop("fixed_in_source")
        advisories.append(Advisory(**entry, fix_file=marker["file"], fix_text=marker["text"]))
    return advisories


def build_number(version: str) -> int | None:
    """The llama.cpp build number in a version line; None when it carries none (a source
    tree without git history builds as 'build 0')."""
    match = BUILD.match(version)
    number = int(match[1] or match[2]) if match else 0
    return number or None


def check_source(tree: Path, advisories: list[Advisory]) -> list[Finding]:
    """A tree without git history (an sdist's) builds as 'build 0': the source it was built
    from says instead whether each fix is in."""
    missing = [a for a in advisories if not a.fixed_in(tree)]
    if not missing:
        return [
            ok(
                "engine-cves",
                f"built from {tree}: the fix of each of the {len(advisories)} known "
                "advisories is in its source",
            )
        ]
    return [
        Finding(
            f"engine-cves:{a.id}",
            "fail",
            f"{tree} lacks the fix of {a.id} ({a.ghsa}) in {a.fix_file}: {a.summary} — {a.source}",
            f"use llama.cpp b{a.fixed_build} or newer (point DSDEPLOY_LLAMA_SERVER at it)",
        )
        for a in missing
    ]


def check_advisories(
    version: str, advisories: list[Advisory], source: Path | None = None
) -> list[Finding]:
    """``source``: the tree a dsdeploy build was compiled from, when it is still there."""
    build = build_number(version)
    if build is None and source is not None:
        return check_source(source, advisories)
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
