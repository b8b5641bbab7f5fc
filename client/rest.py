"""Small helpers shared by the commands that speak assay's REST API (``/api/v1``):
``assay webhook``, ``assay key``, ``assay token``, ``assay login``."""

from __future__ import annotations

from client.errors import ClientError
from client.ref import Registry, parse_location

JSON = {"Accept": "application/json"}


def registry_of(location: str, insecure: bool, hint: str = "") -> Registry:
    """The registry named by ``HOST[:PORT]``; a repository in it is a usage error."""
    registry, name = parse_location(location, insecure=insecure)
    if name is not None:
        raise ClientError(f"{location!r}: give the registry as HOST[:PORT], without a "
                          f"repository{hint}")
    return registry


def response_json(resp, what: str):
    """The JSON body of an assay answer, or a one-line error saying it is not JSON."""
    try:
        return resp.json()
    except ValueError:
        raise ClientError(f"{what}: the registry answered with invalid JSON (not an assay "
                          "registry?)") from None
