"""Hub API uploads: repositories, preupload, git-LFS batch and objects, commits, refs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.errors import Unsupported


async def _todo(request: Request) -> Response:
    raise Unsupported("the Hugging Face Hub API is being built")


create_repo = delete_repo = preupload = commit = lfs_batch = lfs_put = lfs_verify = _todo
create_branch = delete_branch = create_tag = delete_tag = _todo
