"""The server's ``Settings`` as a server-side command sees them: the ``ASSAY_*``
environment, with the flags given on the command line winning."""

from __future__ import annotations

import click
from pydantic import ValidationError

from registry.settings import Settings


def settings(**overrides) -> Settings:
    """The settings, or a one-line ``error:`` naming the variable that is wrong. An
    override of None is a flag not given: the environment (or the default) decides."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ASSAY_" + "_".join(map(str, first["loc"])).upper()
        message = first["msg"].removeprefix("Value error, ")
        raise click.ClickException(message if message.startswith(name)
                                   else f"{name}: {message}") from None
