"""``compose.yaml`` as ``docker compose`` reads it: a service's command, environment and
health check with ``${VAR}`` references resolved from the variables of an ``.env``.

Supported: ``${VAR}``, ``${VAR:-default}`` (default when unset or empty), ``${VAR-default}``
(default when unset) and ``$$`` (a literal ``$``, left for the container's shell). Any other
form is an error, so a new one in compose.yaml is not silently passed on unresolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from tests.support.processes import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
_REFERENCE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\})")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """``value`` with every ``${...}`` resolved from ``variables`` (as compose does)."""

    def resolve(match: re.Match) -> str:
        dollar, name, operator, default = match.groups()
        if dollar:
            return "$"
        given = variables.get(name)
        if operator == ":-" and not given:
            return default
        if operator == "-" and given is None:
            return default
        return given or ""

    result = _REFERENCE.sub(resolve, value)
    if "${" in _REFERENCE.sub("", value):
        raise ValueError(f"unsupported interpolation in compose.yaml: {value!r}")
    return result


@dataclass(frozen=True)
class Service:
    """One service of compose.yaml, interpolated."""

    name: str
    command: list[str]
    environment: dict[str, str]
    healthcheck: list[str] | None  # the ``CMD`` form's argv


def _argv(value, variables: dict[str, str]) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"compose.yaml: expected a list, got {value!r}")
    return [interpolate(str(v), variables) for v in value]


def service(name: str, variables: dict[str, str] | None = None) -> Service:
    """Service ``name`` of compose.yaml with ``variables`` (the ``.env``; unset ones take
    the file's defaults). YAML merge keys (``<<: *assay-env``) are resolved by the loader."""
    variables = variables or {}
    spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]
    env = {k: interpolate(str(v), variables) for k, v in spec.get("environment", {}).items()}
    check = (spec.get("healthcheck") or {}).get("test")
    if check is not None and check[0] != "CMD":
        raise ValueError(f"compose.yaml: {name}'s health check is not in the CMD form")
    return Service(name, _argv(spec["command"], variables), env,
                   _argv(check[1:], variables) if check else None)
