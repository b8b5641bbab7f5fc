"""The settings table of ``docs/configuration.md``, generated from ``Settings``.

Each ``Settings`` field's ``description`` is the one source of what a setting does; this
module renders every field as a Markdown table row (environment variable, type, default,
description) and writes it between the markers ``<!-- BEGIN GENERATED -->`` and
``<!-- END GENERATED -->``, leaving the hand-written prose around them as it is.
``tests/unit/test_configuration_doc.py`` fails when the file differs from what this
renders, so the page cannot drift from the code.

It lives apart from ``registry.settings`` because every assay process imports the settings
and none of them needs the documentation renderer.

    python -m registry.settings_doc            # rewrite docs/configuration.md
    python -m registry.settings_doc --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path

from pydantic.fields import FieldInfo

from registry.settings import Settings

BEGIN = "<!-- BEGIN GENERATED from registry/settings.py by python -m registry.settings_doc -->"
END = "<!-- END GENERATED -->"
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def _type_name(annotation: object) -> str:
    """``int | None`` -> ``integer``; ``Literal["a", "b"]`` -> ```a` or `b```."""
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(f"`{value}`" for value in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        names = [_type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(names)
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _size(value: int) -> str:
    for unit, factor in _UNITS:
        if value >= factor and value % factor == 0:
            return f" ({value // factor} {unit})"
    return ""


def _default(name: str, field: FieldInfo) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        text = str(value)
        return f"`{text if value.is_absolute() else './' + text}`"
    if value == "":
        return "empty"
    if isinstance(value, int) and name.endswith("_bytes"):
        return f"`{value}`{_size(value)}"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table() -> str:
    """The Markdown table of every setting, in the order ``Settings`` declares them."""
    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"Settings.{name} has no description")
        env = f"`{(prefix + name).upper()}`"
        rows.append(
            f"| {env} | {_cell(_type_name(field.annotation))} | {_cell(_default(name, field))}"
            f" | {_cell(field.description)} |")
    return "\n".join(rows) + "\n"


def render(document: str) -> str:
    """``document`` with the text between the markers replaced by the current table."""
    try:
        head, rest = document.split(BEGIN + "\n", 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"the document lacks the markers {BEGIN!r} and {END!r}") from None
    return f"{head}{BEGIN}\n{render_table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry.settings_doc",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file is out of date")
    parser.add_argument("path", nargs="?", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    current = args.path.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{args.path} is out of date: run python -m registry.settings_doc",
                  file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        args.path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
