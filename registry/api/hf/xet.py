"""Xet, the Hub's chunk-deduplicating storage protocol, is not spoken here.

With the ``hf_xet`` package installed, ``huggingface_hub`` uploads every LFS-sized file
through Xet, whatever the server answers elsewhere: it first asks
``GET /api/models/<repo>/xet-write-token/<rev>`` for a token and a CAS address. A 4xx
answer makes it fail at once (a 5xx is retried for minutes), so this answers 404 with a
message saying what to do; downloads never take Xet, since no answer carries
``X-Xet-Hash``. Clients upload through the classic git-LFS path with
``HF_HUB_DISABLE_XET=1``.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from registry.errors import NotFound

log = logging.getLogger("assay.hub")

ADVICE = ("this registry does not support Xet storage: upload with HF_HUB_DISABLE_XET=1 "
          "(the classic git-LFS path)")


class XetUnsupported(NotFound):
    code = "UNSUPPORTED"
    default_message = ADVICE


async def refuse_xet(request: Request) -> Response:
    log.warning("a Hub client asked for Xet on %s (%s); it must upload with "
                "HF_HUB_DISABLE_XET=1", request.path_params.get("name", "?"),
                request.headers.get("user-agent", "")[:120])
    raise XetUnsupported()
