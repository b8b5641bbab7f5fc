"""Hub API downloads: model info, tree, paths-info, refs, commits, resolve, whoami."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.errors import Unsupported


async def _todo(request: Request) -> Response:
    raise Unsupported("the Hugging Face Hub API is being built")


model_info = tree = paths_info = refs = commits = resolve = whoami = _todo
