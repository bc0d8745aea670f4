"""Templates shipped in this package, rendered with Jinja2 (strict: a name a template uses
and the code forgot is an error, not an empty string)."""

from __future__ import annotations

from typing import Any

import jinja2
import yaml


def render(name: str, **values: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dsdeploy.deploy", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles and unit files, not HTML
    )
    return env.get_template(name).render(**values)


def dump_yaml(*documents: dict[str, Any]) -> str:
    """Documents in one YAML stream, keys in the order they were built."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=100)
