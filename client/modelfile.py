'''Ollama Modelfiles: parse one into its parts, and write one back after a pull.

Grammar, following Ollama's own parser (``parser/parser.go``)::

    # a comment (only where an instruction could start)
    FROM ./model.gguf              path relative to the Modelfile; ~ is expanded; or a
                                   model name (gemma3:270m; resolved by ``bases``)
    ADAPTER ./lora.gguf
    TEMPLATE """{{ .Prompt }}"""   value: the rest of the line, "quoted" or """quoted""";
    SYSTEM "You are terse."        a quoted value may span lines until its closing quote
    PARAMETER stop <end_of_turn>   repeated keys (and ``stop`` always) become lists;
    PARAMETER temperature 0.7      numbers and true/false are parsed
    MESSAGE user Hello             role: system, user or assistant
    LICENSE """..."""              may be given more than once
    RENDERER name / PARSER name / REQUIRES 0.6.0   (newer Ollama; kept in the config)

Instructions are case-insensitive. Values are whitespace-trimmed, then unquoted exactly
(no escape sequences), as Ollama does. Any error is one line naming the line number.
'''

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.errors import InputError

INSTRUCTIONS = ("FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE",
                "RENDERER", "PARSER", "REQUIRES")
ROLES = ("system", "user", "assistant")
LIST_PARAMETERS = ("stop",)
_NAME = re.compile(r"[A-Za-z]+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass
class Modelfile:
    source: str = "Modelfile"
    base_dir: Path = Path(".")
    model: str | None = None  # FROM, as written
    adapters: list[str] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    extras: dict[str, str] = field(default_factory=dict)  # renderer, parser, requires
    lines: dict[str, int] = field(default_factory=dict)  # instruction -> first line number

    def resolve(self, value: str) -> Path:
        """A FROM/ADAPTER path: absolute, ``~``-expanded, or relative to the Modelfile."""
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.base_dir / path


def _unquote(text: str) -> tuple[str, bool]:
    """Ollama's ``unquote``: ``(value, complete)``."""
    if text.startswith('"""'):
        if len(text) >= 6 and text.endswith('"""'):
            return text[3:-3], True
        return "", False
    if text.startswith('"'):
        if len(text) >= 2 and text.endswith('"'):
            return text[1:-1], True
        return "", False
    return text, True


def _parse_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and value not in (float("inf"), float("-inf")) else text


class _Lines:
    def __init__(self, text: str):
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.index = 0

    def __iter__(self):
        while self.index < len(self.lines):
            self.index += 1
            yield self.index, self.lines[self.index - 1]

    def value(self, first: str, start_line: int, fail) -> str:
        """The (possibly multi-line) value starting with ``first``, unquoted."""
        buffer = first
        while True:
            value, complete = _unquote(buffer.strip())
            if complete:
                return value
            if self.index >= len(self.lines):
                quote = '"""' if buffer.strip().startswith('"""') else '"'
                fail(start_line, f"unterminated {quote} (the value is never closed)")
            buffer += "\n" + self.lines[self.index]
            self.index += 1


def parse_modelfile(text: str, source: str = "Modelfile", base_dir: Path | None = None
                    ) -> Modelfile:
    """Parse a Modelfile or raise ``InputError("<source> line N: ...")``."""
    mf = Modelfile(source=source, base_dir=base_dir or Path("."))
    repeated: set[str] = set()

    def fail(line: int, message: str):
        raise InputError(f"{source} line {line}: {message}")

    lines = _Lines(text)
    for number, raw in lines:
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = more + (" " + rest if rest else "")
        if not _NAME.fullmatch(word) or word.upper() not in INSTRUCTIONS:
            fail(number, f"unknown instruction {word[:40]!r} (expected one of "
                         f"{', '.join(INSTRUCTIONS[:7])})")
        instruction = word.upper()
        mf.lines.setdefault(instruction, number)
        rest = rest.strip(" \t")
        key = None
        if instruction in ("PARAMETER", "MESSAGE"):
            key, _, rest = rest.replace("\t", " ").partition(" ")
            rest = rest.strip(" ")
            if not key:
                what = "name" if instruction == "PARAMETER" else "role"
                fail(number, f"{instruction} needs a {what} and a value")
        if not rest:
            fail(number, f"{instruction}{' ' + key if key else ''} needs a value")
        value = lines.value(rest, number, fail)
        if instruction == "FROM":
            if mf.model is not None:
                fail(number, "more than one FROM")
            mf.model = value
        elif instruction == "ADAPTER":
            mf.adapters.append(value)
        elif instruction == "TEMPLATE":
            mf.template = value
        elif instruction == "SYSTEM":
            mf.system = value
        elif instruction == "LICENSE":
            mf.licenses.append(value)
        elif instruction == "MESSAGE":
            if key not in ROLES:
                fail(number, f"MESSAGE role {key!r} must be one of system, user, assistant")
            mf.messages.append({"role": key, "content": value})
        elif instruction == "PARAMETER":
            if not _PARAM_NAME.fullmatch(key):
                fail(number, f"invalid PARAMETER name {key!r}")
            _add_parameter(mf.parameters, repeated, key, value)
        else:
            mf.extras[instruction.lower()] = value
    if mf.model is None:
        raise InputError(f"{source}: no FROM line")
    return mf


def _add_parameter(params: dict, repeated: set[str], key: str, text: str) -> None:
    if key in LIST_PARAMETERS:
        params.setdefault(key, []).append(text)
        return
    value = _parse_scalar(text)
    if key in params:
        if key not in repeated:
            params[key] = [params[key]]
            repeated.add(key)
        params[key].append(value)
    else:
        params[key] = value


def load_modelfile(path: Path) -> Modelfile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text file (expected a Modelfile or a .gguf)") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_modelfile(text, source=str(path), base_dir=path.parent)


# ---------------------------------------------------------------------------- writing


def quote(value: str) -> str:
    """Bare when that parses back identically, else ``\"\"\"value\"\"\"``."""
    simple = (value and value == value.strip() and "\n" not in value and "\r" not in value
              and not value.startswith('"') and not value.startswith("#"))
    return value if simple else f'"""{value}"""'


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_modelfile(model: str, *, adapters: list[str] = (), template: str | None = None,
                     system: str | None = None, parameters: dict | None = None,
                     messages: list[dict] = (), licenses: list[str] = (),
                     extras: dict[str, str] | None = None) -> str:
    out = [f"FROM {quote(model)}"]
    out += [f"ADAPTER {quote(a)}" for a in adapters]
    if template is not None:
        out.append(f"TEMPLATE {quote(template)}")
    if system is not None:
        out.append(f"SYSTEM {quote(system)}")
    for key, value in (parameters or {}).items():
        for item in value if isinstance(value, list) else [value]:
            out.append(f"PARAMETER {key} {quote(_param_text(item))}")
    for message in messages:
        content = str(message.get("content", ""))
        out.append(f"MESSAGE {message.get('role', 'user')} {quote(content)}")
    out += [f"LICENSE {quote(text)}" for text in licenses]
    for key, value in (extras or {}).items():
        out.append(f"{key.upper()} {quote(value)}")
    return "\n".join(out) + "\n"
