"""Hub API uploads: repositories, preupload, git-LFS batch and objects, commits, refs.

Thin: the rules are ``registry.services.hub_commits`` (and the commit body's,
``registry.formats.hub_commit``). ``create_repo`` / ``delete_repo`` name the repository
in the body, so they check push / delete on it here, with the usual refusal texts.

The LFS batch answer's upload ``href`` is signed for the caller when access control is
on (``tokens.sign_upload``): ``huggingface_hub`` PUTs there without credentials, and the
guard admits the signed PUT as that caller. Xet is refused elsewhere
(``registry.api.hf.xet``).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.access import refusals, tokens
from registry.access.permissions import DELETE, PUSH
from registry.api.guard import base_url, caller, may, refuse_mirror_push
from registry.api.oci.base import read_limited, repo_name, service
from registry.api.oci.uploads import owner
from registry.api.rest.common import json_body
from registry.digests import check_name
from registry.errors import BodyTooLarge, Conflict, Denied, RequestInvalid, SizeInvalid
from registry.formats.hub_commit import MAX_COMMIT_BODY
from registry.services.hub_commits import UPLOAD_URL_SECONDS

LFS_JSON = "application/vnd.git-lfs+json"


def _settings(request: Request):
    return request.app.state.settings


def _body_repo(body: dict) -> str:
    """``organization/name`` (or ``name``) from a create/delete body; a type other than
    ``model`` is refused."""
    kind = body.get("type") or "model"
    if kind != "model":
        raise RequestInvalid(f"only model repositories are served here, not {str(kind)[:20]!r}")
    name, org = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not name or (org is not None and not isinstance(org, str)):
        raise RequestInvalid("the body needs 'name' (and optionally 'organization')")
    return check_name(f"{org}/{name}" if org else name)


def _require(request: Request, action: str, name: str) -> None:
    if not may(request, action, name):
        why = refusals.explain(caller(request), action, name)
        raise Denied(why.message, why.detail)


async def create_repo(request: Request) -> Response:
    name = _body_repo(await json_body(request))
    _require(request, PUSH, name)
    await refuse_mirror_push(request, name)
    url = f"{base_url(request)}/{name}"
    try:
        await run_in_threadpool(service(request).hub_commits.create_repo, name)
    except Conflict:
        # The client's exist_ok reads "url" from the 409 answer too.
        text = f"repository {name!r} already exists"
        return JSONResponse({"error": text, "url": url}, status_code=409,
                            headers={"X-Error-Message": text})
    return JSONResponse({"url": url, "name": name})


async def delete_repo(request: Request) -> Response:
    name = _body_repo(await json_body(request))
    _require(request, DELETE, name)
    await run_in_threadpool(service(request).hub_commits.delete_repo, name)
    return JSONResponse({})


async def preupload(request: Request) -> Response:
    _no_pull_requests(request)
    body = await json_body(request)
    files = await run_in_threadpool(service(request).hub_commits.preupload,
                                    repo_name(request), request.path_params["revision"],
                                    body.get("files"))
    return JSONResponse({"files": files})


def _no_pull_requests(request: Request) -> None:
    if request.query_params.get("create_pr") not in (None, "", "0", "false"):
        raise RequestInvalid("pull requests are not supported: commit to a branch")


async def lfs_batch(request: Request) -> Response:
    name = repo_name(request)
    body = await json_body(request)
    base, key = base_url(request), None
    if _settings(request).auth:
        key = service(request).identities.signing_key()
    ttl, who = UPLOAD_URL_SECONDS, caller(request)
    user = who.name if who is not None else None

    def href(oid: str, size: int) -> str:
        url = f"{base}/{name}.git/info/lfs/objects/{oid}"
        if key is None:
            return f"{url}?size={size}"
        return f"{url}?{tokens.sign_upload(key, name, oid, size, user, ttl)}"

    answer = await run_in_threadpool(service(request).hub_commits.lfs_batch, name, body,
                                     href, f"{base}/{name}.git/info/lfs/verify")
    return JSONResponse(answer, media_type=LFS_JSON)


def _size(request: Request) -> int:
    size = request.query_params.get("size", "")
    if not (size.isascii() and size.isdigit() and len(size) <= 20):
        raise SizeInvalid("the LFS object URL needs ?size=<bytes> (as the batch answer "
                          "gave it)")
    return int(size)


async def lfs_put(request: Request) -> Response:
    name, oid = repo_name(request), request.path_params["oid"]
    size = _size(request)  # signed with the URL when it came from a batch answer
    declared = request.headers.get("content-length")
    length = int(declared) if declared and declared.isascii() and declared.isdigit() \
        else None
    await service(request).hub_commits.lfs_put(name, oid, size, request.stream(), length,
                                               owner(request))
    return Response(status_code=200)


async def lfs_verify(request: Request) -> Response:
    body = await json_body(request)
    await run_in_threadpool(service(request).hub_commits.lfs_verify, repo_name(request), body)
    return JSONResponse({}, media_type=LFS_JSON)


def _too_large(_declared: int | None) -> BodyTooLarge:
    return BodyTooLarge(f"a commit body may be at most {MAX_COMMIT_BODY} bytes: upload "
                        "large files through LFS")


async def commit(request: Request) -> Response:
    _no_pull_requests(request)
    name, revision = repo_name(request), request.path_params["revision"]
    body = await read_limited(request, MAX_COMMIT_BODY, _too_large)
    oid = await run_in_threadpool(service(request).hub_commits.commit, name, revision, body,
                                  owner(request))
    return JSONResponse({"commitUrl": f"{base_url(request)}/{name}/commit/{oid}",
                         "commitOid": oid, "pullRequestUrl": None})


async def create_branch(request: Request) -> Response:
    body = await json_body(request)
    start = body.get("startingPoint")
    if start is not None and not isinstance(start, str):
        raise RequestInvalid("startingPoint must be a revision (a branch, tag or commit id)")
    await run_in_threadpool(service(request).hub_commits.create_ref, repo_name(request),
                            request.path_params["branch"], start)
    return JSONResponse({})


async def delete_branch(request: Request) -> Response:
    await run_in_threadpool(service(request).hub_commits.delete_ref, repo_name(request),
                            request.path_params["branch"])
    return JSONResponse({})


async def create_tag(request: Request) -> Response:
    body = await json_body(request)
    tag = body.get("tag")
    if not isinstance(tag, str) or not tag:
        raise RequestInvalid("the body needs 'tag': the name of the new tag")
    await run_in_threadpool(service(request).hub_commits.create_ref, repo_name(request), tag,
                            request.path_params["revision"], kind="tag")
    return JSONResponse({})


async def delete_tag(request: Request) -> Response:
    await run_in_threadpool(service(request).hub_commits.delete_ref, repo_name(request),
                            request.path_params["revision"])
    return JSONResponse({})
