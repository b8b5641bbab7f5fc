"""Parsing JSON text that came from outside: request bodies, pushed manifests, cursors.

``loads`` accepts only what RFC 8259 calls interoperable JSON and what the rest of the
registry can safely hold, and refuses the rest at parse time with a ``ValueError``:

- arrays and objects nested deeper than about 200 levels, the parser's fixed recursion
  limit (the standard library recurses until ``RecursionError``, and so would anything
  that walked such a result later);
- a ``\\uD800``-``\\uDFFF`` escape that is not half of a surrogate pair (the standard
  library returns a ``str`` that cannot be encoded as UTF-8, failing later in a database
  driver, a JSON response or a log line);
- text that is not UTF-8, ``NaN`` / ``Infinity``, and trailing data.

The parser is pydantic-core's (``pydantic_core.from_json``, jiter), already installed for
the settings; its error messages give a position and never echo the input.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json


def loads(text: bytes | bytearray | str, *, allow_inf_nan: bool = False) -> Any:
    """The JSON value in ``text``; ``ValueError`` (with a message that is safe to show
    the sender) when it is not JSON or is refused as described in the module docstring.
    ``allow_inf_nan``: accept ``NaN`` and ``Infinity`` as Python's ``json`` does (model
    files written by Python tools may hold them)."""
    return from_json(text, allow_inf_nan=allow_inf_nan)
