"""The client's exceptions, and the one place that turns any failure into one line.

Hierarchy::

    ClientError                  a failure the user can act on; ``str()`` is one line
    ├── BadReference             a malformed HOST[:PORT]/NAME[:TAG|@DIGEST]
    ├── InputError               a local file or directory that cannot be pushed
    ├── RegistryResponseError    the registry answered with an error status (OCI error JSON)
    │   ├── NotFoundError        ... 404
    │   └── auth.AuthError       ... 401 (or 403 without credentials): run assay login
    ├── ConnectionFailed         the registry could not be reached
    └── IntegrityError           downloaded bytes do not match their digest

``TransientError`` is internal: a 5xx/429 answer the retry policy may repeat. When retries
run out it is re-raised as a ``RegistryResponseError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from urllib.parse import unquote

import click
import httpx


class ClientError(Exception):
    """A failure with a message fit for one line of stderr."""


class BadReference(ClientError):
    pass


class InputError(ClientError):
    pass


class ConnectionFailed(ClientError):
    pass


class IntegrityError(ClientError):
    pass


class RegistryResponseError(ClientError):
    def __init__(self, message: str, status: int, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class NotFoundError(RegistryResponseError):
    pass


class TransientError(Exception):
    """A retryable answer (5xx, 429); carries the response for the final message."""

    def __init__(self, response: httpx.Response):
        super().__init__(f"{response.status_code} from {response.request.url}")
        self.response = response


# The registry's message on answers without a body (a HEAD): see registry.api.errors.
ERROR_HEADER = "X-Error-Message"


def oci_error_text(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from an OCI error body (or RFC 9457 problem JSON); without
    one, from the ``X-Error-Message`` header (a ``HEAD`` answer has no body), else the
    status phrase."""
    try:
        body = json.loads(response.content or b"null")
        errors = body.get("errors") if isinstance(body, dict) else None
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        body, errors = None, None
    if isinstance(body if not errors else None, dict) and isinstance(body.get("detail"), str):
        # RFC 9457 problem details (assay's REST API): {"title", "detail", "code"}
        return (str(body.get("code") or "") or None), body["detail"].strip()
    if errors and isinstance(errors[0], dict):
        first = errors[0]
        code = str(first.get("code") or "") or None
        message = str(first.get("message") or "").strip()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return code, (message or (code or "").lower().replace("_", " ")) + more
    header = unquote(response.headers.get(ERROR_HEADER, "")).strip()
    if header:
        return _STATUS_CODES.get(response.status_code), header
    return None, f"{response.status_code} {response.reason_phrase}".strip()


# The OCI code of a bodyless answer whose message came in the header.
_STATUS_CODES = {401: "UNAUTHORIZED", 403: "DENIED"}


def response_error(response: httpx.Response, what: str) -> RegistryResponseError:
    code, message = oci_error_text(response)
    if response.status_code == 403:  # the registry's message names who and what
        return RegistryResponseError(f"denied: {message}", 403, code)
    if response.status_code == 401:  # a challenge the client could not answer
        try:
            host = " " + response.request.url.netloc.decode("ascii", "replace")
        except RuntimeError:  # a response built without its request
            host = ""
        return RegistryResponseError(f"{what}: {message} (HTTP 401): run assay login{host}",
                                     401, code)
    cls = NotFoundError if response.status_code == 404 else RegistryResponseError
    prefix = f"{code}: " if code and code.lower().replace("_", " ") not in message.lower() else ""
    return cls(f"{what}: {prefix}{message} (HTTP {response.status_code})",
               response.status_code, code)


def one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Run a CLI command: any failure becomes ``error: <one line>`` on stderr and exit 1.

    ``ASSAY_DEBUG=1`` adds the traceback for failures that are not ``ClientError``s.
    """
    try:
        yield
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    except ClientError as exc:
        click.echo(f"error: {one_line(str(exc))}", err=True)
        raise click.exceptions.Exit(1) from None
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        raise click.exceptions.Exit(130) from None
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        raise click.exceptions.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback by default
        if os.environ.get("ASSAY_DEBUG"):
            traceback.print_exc()
        detail = str(exc) or type(exc).__name__
        click.echo(f"error: {one_line(f'{type(exc).__name__}: {detail}')}", err=True)
        raise click.exceptions.Exit(1) from None
