"""``DELETE /api/v1/repositories/<name>``: delete a whole repository.

Every manifest goes as ``DELETE /v2/<name>/manifests/<digest>`` would take it (its tags
with it, one audit entry and one ``delete`` event each), then the repository itself, in
one transaction (``ManifestService.delete_repository``); it needs the ``delete`` action
on the repository. The answer lists what was deleted; the blobs are freed by ``assay gc``.
OCI has no way to list a repository's untagged manifests, so a client cannot do this
with ``/v2/`` requests alone (``assay rm REPO --all`` uses this route).

The route's ``{name:repository}`` is a repository name no later component of which is
``tags`` or ``manifests``: a plain ``{name:path}`` would take the paths of the routes
below a repository (``.../tags/<tag>``, ``.../manifests/<digest>/verify``) as names,
and a DELETE of those would delete a repository called ``team/app/tags/v1`` instead of
answering 405. A repository named so (``team/tags``) is deleted a manifest at a time.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import repo_name, service
from registry.api.rest.common import operation
from registry.api.rest.schemas import NAME_PATTERN, Answer, path_param
from registry.digests import MAX_NAME_LENGTH

_BELOW = "(?:tags|manifests)(?:/|$)"  # where the routes below a repository begin
WHOLE_NAME = path_param(
    "name", {"type": "string", "pattern": f"^(?!.*/{_BELOW}){NAME_PATTERN[1:]}",
             "maxLength": MAX_NAME_LENGTH},
    "Repository name; no component after the first is 'tags' or 'manifests'.",
    "library/tiny")


class RepositoryName(Convertor):
    regex = rf"[^/]+(?:/(?!{_BELOW})[^/]+)*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("repository", RepositoryName())


class DeletedManifest(Answer):
    digest: str
    tags: list[str]


class RepositoryDeleted(Answer):
    repository: str
    manifests: list[DeletedManifest]


@operation("deleteRepository", "manifests",
           "Delete a repository: every tag and manifest (as their single deletes), then "
           "the repository", RepositoryDeleted, params={"name": WHOLE_NAME},
           problems=(400, 404))
async def delete_repository(request: Request) -> JSONResponse:
    name = repo_name(request)
    deleted = await run_in_threadpool(service(request).manifests.delete_repository, name)
    return JSONResponse({"repository": name, "manifests": deleted})
