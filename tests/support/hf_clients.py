"""Real Hugging Face Hub clients (``huggingface_hub``, ``mlx_lm``, ``llama_cpp``) run against a
real ``assay serve`` as their users run them: in their own process, with ``HF_ENDPOINT``
pointing at assay and nothing else of the test's environment.

``run_client(endpoint, home, code, ...)`` runs ``code`` (Python statements) in a fresh
interpreter whose environment holds only ``PATH``, ``HOME``, the ``HF_*`` variables below and
``HF_TOKEN`` when a token is given: the test process's ``HF_HUB_OFFLINE`` (set by the MLX
fixtures) and any real Hugging Face credentials never reach it. ``HF_HUB_DISABLE_XET=1``
selects the classic (git-LFS) upload path unless ``xet=True``.

Inside ``code``:

- ``emit(**values)`` hands JSON-able values back (``ClientRun.value``);
- ``attempt(fn, *args, **kwargs)`` calls ``fn`` and returns ``{"ok": result}`` or, if it
  raised, ``{"error": {"type", "types" (the class and its bases), "message", "status"}}``
  (``status``: the HTTP status of a ``HfHubHTTPError``), so one process can try several
  calls that are meant to fail;
- ``sha256(path)`` hashes a file;
- ``REQUESTS`` lists the requests ``huggingface_hub`` has sent so far, as ``[method, path,
  authenticated]`` (read from its own debug log, which nothing else prints).

An exception that escapes ``code`` fails the run: ``ClientRun.check()`` raises with the
client's traceback (the tail only), as does a run that outlives its ``timeout``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

RESULT = "@@hf-client-result "
FAILURE = "@@hf-client-failure "
TAIL = 3000

_PRELUDE = r'''
import hashlib, json, logging, sys, traceback
from urllib.parse import urlsplit

REQUESTS = []

class _Recorder(logging.Handler):
    def emit(self, record):
        if record.msg.startswith("Request ") and len(record.args) == 4:
            _, method, url, authenticated = record.args
            REQUESTS.append([method, urlsplit(str(url)).path, bool(authenticated)])

_http_log = logging.getLogger("huggingface_hub.utils._http")
_http_log.setLevel(logging.DEBUG)
_http_log.propagate = False
_http_log.addHandler(_Recorder())

def _describe(exc):
    response = getattr(exc, "response", None)
    return {"type": type(exc).__name__, "types": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc), "status": getattr(response, "status_code", None)}

def emit(**values):
    print("\n" + RESULT + json.dumps(values, default=str), flush=True)

def attempt(fn, *args, **kwargs):
    try:
        return {"ok": fn(*args, **kwargs)}
    except Exception as exc:
        return {"error": _describe(exc)}

def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()

try:
{body}
except BaseException as exc:
    traceback.print_exc()
    print("\n" + FAILURE + json.dumps(_describe(exc), default=str), flush=True)
    sys.exit(1)
'''


def _tail(text: str) -> str:
    return text if len(text) <= TAIL else "...\n" + text[-TAIL:]


@dataclass
class ClientRun:
    """What one client process did: ``value`` (what it emitted), ``failure`` (the escaped
    exception, described like ``attempt`` does), its output and how long it ran."""

    code: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    value: dict | None
    failure: dict | None

    def check(self) -> dict:
        """The emitted values; fails with the client's output if the code raised."""
        assert self.returncode == 0 and self.value is not None, self.report()
        return self.value

    def report(self) -> str:
        return (f"client exited {self.returncode} after {self.seconds:.1f} s; failure: "
                f"{self.failure}\n--- stderr (tail):\n{_tail(self.stderr)}\n--- stdout "
                f"(tail):\n{_tail(self.stdout)}\n--- code:\n{self.code}")


def client_env(endpoint: str, home: Path, *, token: str | None = None,
               xet: bool = False) -> dict[str, str]:
    """A clean environment for a Hub client: ``HF_ENDPOINT``, a private ``HF_HOME``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "10",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_client(endpoint: str, home: Path, code: str, *, token: str | None = None,
               xet: bool = False, timeout: float = 60.0) -> ClientRun:
    """Run ``code`` in a fresh interpreter as a Hub client of ``endpoint`` (see the module
    docstring). A run still going after ``timeout`` seconds is killed and fails the test:
    a client that hangs is a failure, not a slow pass."""
    body = textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")
    script = _PRELUDE.replace("RESULT", repr(RESULT)).replace("FAILURE", repr(FAILURE))
    script = script.replace("{body}", body)
    env = client_env(endpoint, home, token=token, xet=xet)
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, cwd=home, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise AssertionError(f"the client did not finish within {timeout:.0f} s (a hang):\n"
                             f"--- stderr (tail):\n{_tail(err)}\n--- stdout (tail):\n"
                             f"{_tail(out)}\n--- code:\n{code}") from None
    seconds = time.monotonic() - started
    value = failure = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            value = {**(value or {}), **json.loads(line[len(RESULT):])}
        elif line.startswith(FAILURE):
            failure = json.loads(line[len(FAILURE):])
    return ClientRun(code, proc.returncode, proc.stdout, proc.stderr, seconds, value, failure)


def raised(outcome: dict, exception: str, status: int | None = None) -> dict:
    """The error of an ``attempt`` that must have raised ``exception`` (the class or one of
    its bases, by name) with HTTP ``status`` if given; returns the error."""
    error = outcome.get("error")
    assert error is not None, f"expected {exception}, but the call returned {outcome.get('ok')!r}"
    assert exception in error["types"], f"expected {exception}, got {error}"
    if status is not None:
        assert error["status"] == status, f"expected HTTP {status}, got {error}"
    return error


def ok(outcome: dict):
    """The result of an ``attempt`` that must have succeeded."""
    assert "error" not in outcome, f"the call raised: {outcome['error']}"
    return outcome["ok"]
