"""The Hub API's route table (see the package docstring)."""

from __future__ import annotations

from functools import wraps

from starlette.routing import Route

from registry.access.permissions import DELETE, PULL, PUSH
from registry.api.guard import USER, guard
from registry.api.hf import cards, download, upload, xet
from registry.api.hf.errors import HUB_API


def hub(need):
    """``guard(need)``, with errors rendered for the Hub's clients."""

    def wrap(handler):
        guarded = guard(need)(handler)

        @wraps(guarded)
        async def marked(request):
            request.scope[HUB_API] = True
            return await guarded(request)

        marked.requirement = need  # read by the permission-matrix test
        return marked

    return wrap


pull, push, delete = hub(("repo", PULL)), hub(("repo", PUSH)), hub(("repo", DELETE))
M = "/api/models/{name:path}"
LFS = "/{name:path}.git/info/lfs"

routes = [
    Route("/api/whoami-v2", hub(USER)(download.whoami), methods=["GET"]),
    # The repository is named in the body: the handlers check push / delete on it.
    Route("/api/repos/create", hub(USER)(upload.create_repo), methods=["POST"]),
    Route("/api/repos/delete", hub(USER)(upload.delete_repo), methods=["DELETE"]),
    # huggingface_hub checks a README.md's metadata here before it commits one.
    Route("/api/validate-yaml", hub(USER)(cards.validate_yaml), methods=["POST"]),
    Route(M + "/xet-write-token/{revision}", push(xet.refuse_xet), methods=["GET"]),
    Route(M + "/xet-read-token/{revision}", pull(xet.refuse_xet), methods=["GET"]),
    Route(M + "/revision/{revision}", pull(download.model_info), methods=["GET"]),
    Route(M + "/tree/{revision}/{path:path}", pull(download.tree), methods=["GET"]),
    Route(M + "/tree/{revision}", pull(download.tree), methods=["GET"]),
    Route(M + "/paths-info/{revision}", pull(download.paths_info), methods=["POST"]),
    Route(M + "/refs", pull(download.refs), methods=["GET"]),
    Route(M + "/commits/{revision}", pull(download.commits), methods=["GET"]),
    Route(M + "/preupload/{revision}", push(upload.preupload), methods=["POST"]),
    Route(M + "/commit/{revision}", push(upload.commit), methods=["POST"]),
    Route(M + "/branch/{branch}", push(upload.create_branch), methods=["POST"]),
    Route(M + "/branch/{branch}", delete(upload.delete_branch), methods=["DELETE"]),
    Route(M + "/tag/{revision}", push(upload.create_tag), methods=["POST"]),
    Route(M + "/tag/{revision}", delete(upload.delete_tag), methods=["DELETE"]),
    Route(M, pull(download.model_info), methods=["GET"]),
    Route(LFS + "/objects/batch", push(upload.lfs_batch), methods=["POST"]),
    Route(LFS + "/objects/{oid}", push(upload.lfs_put), methods=["PUT"]),
    Route(LFS + "/verify", push(upload.lfs_verify), methods=["POST"]),
    Route("/{name:path}/resolve/{revision}/{path:path}", pull(download.resolve),
          methods=["GET", "HEAD"]),
]
