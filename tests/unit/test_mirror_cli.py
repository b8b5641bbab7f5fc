"""``assay mirror`` without a server: the refresh durations, the request body it sends, and
the argument errors it reports itself (one ``error:`` line, before any connection)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from client.errors import InputError
from client.mirrors import format_duration, mirror_request, parse_duration
from tests.support.cli import assay

# Nothing listens there: an error reported before connecting never reaches it.
NOWHERE = ("-r", "127.0.0.1:9")


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("3600", 3600), ("0", 0),
    ("1h30m", 5400), (" 1H ", 3600), ("366d", 366 * 86400),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1.5h", "-1h", "1w", "1h 30m", "10 s", "367d",
                                  "1y", "s1"])
def test_bad_durations_name_the_text(text):
    with pytest.raises(InputError, match="--refresh") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (45, "45s"), (900, "15m"),
                                           (3600, "1h"), (5400, "1h30m"), (90061, "1d1h1m1s")])
def test_format_is_the_inverse(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_request_body():
    body = mirror_request("HF", "https://huggingface.co/google", None, "hf_secret", "1d",
                          True, 30)
    assert body == {"kind": "hf", "url": "https://huggingface.co/google", "username": None,
                    "password": "hf_secret", "refresh_seconds": 86400, "verify_first": True,
                    "keep_days": 30}


def test_no_password_keeps_the_stored_one():
    """Omitted, not null: the registry keeps the stored password."""
    body = mirror_request("ollama", "", "", None, "1h", False, None)
    assert "password" not in body and body["url"] == "" and body["username"] is None


def _error(*args: str, input: str | None = None, code: int = 1) -> str:
    err = assay("mirror", *args, *NOWHERE, code=code, input=input, stream="stderr")
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["add", "m", "--kind", "docker"], "--kind must be one of ollama, oci, hf, not 'docker'"),
    (["add", "hub", "--kind", "oci"], "give the upstream URL: --kind oci has no default"),
    (["add", "g", "", "--kind", "hf"], "--kind hf has no default"),
    (["add", "m", "--kind", "ollama", "--refresh", "soon"], "'soon' is not a duration"),
    (["add", "team/sub", "--kind", "ollama"], "one name segment, not 'team/sub'"),
    (["rm", "a/b"], "one name segment, not 'a/b'"),
])
def test_argument_errors_are_one_line(args, words):
    assert words in _error(*args)


def test_password_stdin():
    assert "no password on standard input" in _error(
        "add", "m", "https://r.example", "--kind", "oci", "--username", "u",
        "--password-stdin", input="\n")
    assert "--password-stdin needs --username" in _error(
        "add", "m", "https://r.example", "--kind", "oci", "--password-stdin", input="pw\n")


def test_usage_errors_are_one_line_too():
    assert "Missing option '--kind'" in _error("add", "m", code=2)
    assert "--keep-days" in _error("add", "m", "--kind", "ollama", "--keep-days", "0", code=2)
    assert "No such option '--password'" in _error("add", "m", "--kind", "oci",
                                                  "--password", "pw", code=2)


def test_every_command_has_help_with_an_example():
    out = assay("mirror", "add", "--help")
    assert "assay mirror add mirror --kind ollama" in out
    for verb in ("ls", "show", "rm"):
        assert "--registry" in assay("mirror", verb, "--help")


def test_the_command_imports_no_server():
    code = ("import json, sys\nfrom registry.cli import main\n"
            "main(['mirror', 'add', '--help'], standalone_mode=False)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    modules = json.loads(out.splitlines()[-1])
    assert not [m for m in modules if m.startswith(("sqlalchemy", "starlette",
                                                    "registry.services", "registry.app"))]
