"""Hub API downloads: model info, tree, paths-info, refs, commits, resolve, whoami.

The answers are shaped as ``huggingface_hub`` parses them (``ModelInfo``, ``RepoFile`` /
``RepoFolder``, ``GitRefs``, ``GitCommitInfo``); dates as ``2024-05-01T12:00:00.000Z``
(the one format its parser takes). What a revision is and which files a commit holds is
``registry.services.hub``'s business; these handlers only read the request and write
the answer.

``resolve`` answers every request (errors included, where a commit is known) with
``X-Repo-Commit``; an LFS file (a whole blob) with ``X-Linked-Etag`` (its sha256) and
``X-Linked-Size``; HEAD with the exact ``Content-Length``; GET honours one ``Range``
(206, or 416 with ``Content-Range: bytes */size``). On S3 with presigned redirects an
LFS GET is a 307 to the object (HEAD is always answered here, so the client reads the
commit and etag from us).

Tree pages hold 1000 entries (50 with ``expand``); ``Link: <absolute URL>; rel="next"``
carries an opaque ``cursor`` (the last path of the page), since the client follows the
link as it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from urllib.parse import parse_qs, quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry import jsontext
from registry.access.permissions import ADMIN, DELETE, PULL, PUSH
from registry.api.guard import base_url, caller
from registry.api.oci.base import (
    absolute,
    empty,
    mirror_of,
    quick_read,
    read_limited,
    repo_name,
    service,
)
from registry.api.oci.blobs import BlobResponse, parse_range
from registry.errors import BodyTooLarge, EntryUnknown, RequestInvalid
from registry.services.hub import Commit, Revision
from registry.services.hub_files import HubFile, check_path

PAGE = 1000
PAGE_EXPANDED = 50
MAX_PATHS_BODY = 1024 * 1024
_TRUE = ("1", "true", "True", "yes")


def hub_date(value: datetime | None) -> str | None:
    """``2024-05-01T12:00:00.123Z``: what ``huggingface_hub``'s ``parse_datetime`` takes."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def commit_title(digest: str, status: str | None) -> str:
    return f"{digest} ({status or 'not a model'})"


class EntryMissing(EntryUnknown):
    """EntryNotFound with the commit that lacks the file: ``transformers`` caches the
    absence of optional files under ``X-Repo-Commit``."""

    def __init__(self, exc: EntryUnknown, commit: str):
        super().__init__(exc.message, exc.detail)
        self.commit = commit

    def headers(self) -> dict[str, str]:
        return {"X-Repo-Commit": self.commit}


async def _revision(request: Request, revision: str | None = None) -> Revision:
    name = repo_name(request)
    if revision is None:
        revision = request.path_params.get("revision", "main")
    svc = service(request)
    if await mirror_of(request, name) is not None:  # what it lacks comes from its upstream
        await run_in_threadpool(svc.mirror_fetch.ensure, name, revision)
    return await quick_read(request, svc.hub.resolve, name, revision, base_url(request))


# ---- model info -----------------------------------------------------------------------

def sibling(f: HubFile) -> dict:
    out = {"rfilename": f.path, "size": f.size, "blobId": f.oid}
    if f.lfs:
        out["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": len(f.pointer)}
    return out


async def model_info(request: Request) -> Response:
    rev = await _revision(request)
    svc = service(request)
    private = False
    if request.app.state.settings.auth:
        anonymous = await run_in_threadpool(svc.identities.anonymous)
        private = not anonymous.can(PULL, rev.repository)
    body = await run_in_threadpool(_model_info, svc, rev, base_url(request), private)
    return JSONResponse(body)


def _model_info(svc, rev: Revision, base: str, private: bool) -> dict:
    files = svc.hub.files(rev, base)
    card = svc.hub.card_data(rev, files, base)
    tags = card.get("tags")
    body = {
        "id": rev.repository, "modelId": rev.repository,
        "author": rev.repository.split("/", 1)[0], "sha": rev.commit,
        "lastModified": hub_date(rev.created_at),
        "createdAt": hub_date(svc.hub.repository_created(rev.repository)),
        "private": private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "cardData": card, "siblings": [sibling(f) for f in files],
        "usedStorage": svc.hub.used_storage(rev), "spaces": [],
        "assay": {"digest": rev.digest, "status": rev.status, "branch": rev.branch},
    }
    for key in ("library_name", "pipeline_tag"):
        if isinstance(card.get(key), str):
            body[key] = card[key]
    return body


# ---- tree and paths-info --------------------------------------------------------------

def _flag(value: str | None) -> bool:
    return value is not None and value in _TRUE


def _folder_oid(rev: Revision, path: str) -> str:
    return hashlib.sha1(f"tree {rev.commit} {path}".encode()).hexdigest()


def _entry(rev: Revision, item: HubFile | str, expand: bool) -> dict:
    if isinstance(item, str):
        out = {"type": "directory", "oid": _folder_oid(rev, item), "size": 0, "path": item}
    else:
        out = {"type": "file", "oid": item.oid, "size": item.size, "path": item.path}
        if item.lfs:
            out["lfs"] = {"oid": item.sha256, "size": item.size,
                          "pointerSize": len(item.pointer)}
    if expand:
        out["lastCommit"] = {"id": rev.commit, "title": commit_title(rev.digest, rev.status),
                             "date": hub_date(rev.created_at)}
    return out


def folders(files: list[HubFile]) -> set[str]:
    out = set()
    for f in files:
        parts = f.path.split("/")[:-1]
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def listing(files: list[HubFile], under: str, recursive: bool) -> list[HubFile | str]:
    """The entries below folder ``under`` ("" for the root), sorted by path."""
    prefix = under + "/" if under else ""
    entries: dict[str, HubFile | str] = {}
    for f in files:
        if not f.path.startswith(prefix):
            continue
        rest = f.path[len(prefix):].split("/")
        for i in range(1, len(rest)):
            entries.setdefault(prefix + "/".join(rest[:i]), prefix + "/".join(rest[:i]))
            if not recursive:
                break
        if recursive or len(rest) == 1:
            entries[f.path] = f
    return [entries[k] for k in sorted(entries)]


def _cursor(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_",
                                validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise RequestInvalid("invalid cursor: follow the Link header unchanged") from None


async def tree(request: Request) -> Response:
    rev = await _revision(request)
    under = request.path_params.get("path", "").strip("/")
    if under:
        check_path(under)
    q = request.query_params
    recursive, expand = _flag(q.get("recursive")), _flag(q.get("expand"))
    after = _cursor(q.get("cursor"))
    svc = service(request)
    files = await run_in_threadpool(svc.hub.files, rev, base_url(request))
    if under and under not in folders(files):
        if any(f.path == under for f in files):
            raise EntryMissing(EntryUnknown(f"{under!r} is a file, not a folder"), rev.commit)
        raise EntryMissing(EntryUnknown(f"no folder {under!r} at commit {rev.commit}",
                                        {"path": under}), rev.commit)
    entries = listing(files, under, recursive)
    if after is not None:
        entries = [e for e in entries if (e if isinstance(e, str) else e.path) > after]
    size = PAGE_EXPANDED if expand else PAGE
    page, more = entries[:size], len(entries) > size
    headers = {"X-Repo-Commit": rev.commit}
    if more:
        last = page[-1] if isinstance(page[-1], str) else page[-1].path
        query = urlencode({"recursive": str(recursive).lower(), "expand": str(expand).lower(),
                           "cursor": base64.urlsafe_b64encode(last.encode()).decode()
                           .rstrip("=")})
        url = absolute(request, quote(request.url.path)) + "?" + query
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse([_entry(rev, e, expand) for e in page], headers=headers)


async def _paths_form(request: Request) -> tuple[list[str], bool]:
    body = await read_limited(request, MAX_PATHS_BODY, lambda n: BodyTooLarge(
        f"the paths-info body is over {MAX_PATHS_BODY} bytes"))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            doc = jsontext.loads(body)
        except ValueError:
            raise RequestInvalid("the paths-info body is not JSON") from None
        paths = doc.get("paths") if isinstance(doc, dict) else None
        expand = bool(doc.get("expand")) if isinstance(doc, dict) else False
    else:
        try:
            form = parse_qs(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise RequestInvalid("the paths-info body is not UTF-8") from None
        paths = form.get("paths")
        expand = _flag((form.get("expand") or ["false"])[0])
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise RequestInvalid("paths-info needs 'paths': a list of file or folder paths")
    return paths, expand


async def paths_info(request: Request) -> Response:
    paths, expand = await _paths_form(request)
    for p in paths:
        check_path(p.strip("/"))
    rev = await _revision(request)
    svc = service(request)
    files = await run_in_threadpool(svc.hub.files, rev, base_url(request))
    by_path = {f.path: f for f in files}
    dirs = folders(files)
    out = []
    for p in dict.fromkeys(p.strip("/") for p in paths):
        if p in by_path:
            out.append(_entry(rev, by_path[p], expand))
        elif p in dirs:
            out.append(_entry(rev, p, expand))
    return JSONResponse(out, headers={"X-Repo-Commit": rev.commit})


# ---- refs and commits -----------------------------------------------------------------

async def refs(request: Request) -> Response:
    name = repo_name(request)
    svc = service(request)
    found = await quick_read(request, svc.hub.refs, name)
    body = {"branches": [{"name": tag, "ref": f"refs/heads/{tag}", "targetCommit": commit}
                         for tag, commit in found],
            "converts": [], "tags": []}
    if _flag(request.query_params.get("include_prs")):
        body["pullRequests"] = []
    return JSONResponse(body)


def _commit_json(c: Commit) -> dict:
    return {"id": c.commit, "authors": [], "date": hub_date(c.date),
            "title": commit_title(c.digest, c.status),
            "message": f"manifest {c.digest}; verification: {c.status or 'not a model'}"}


async def commits(request: Request) -> Response:
    name = repo_name(request)
    svc = service(request)
    found = await quick_read(request, svc.hub.commits, name, request.path_params["revision"],
                             base_url(request))
    return JSONResponse([_commit_json(c) for c in found])


# ---- resolve --------------------------------------------------------------------------

async def resolve(request: Request) -> Response:
    path = check_path(request.path_params["path"])
    rev = await _revision(request)
    svc = service(request)
    try:
        f = await run_in_threadpool(svc.hub.file, rev, path, base_url(request))
    except EntryUnknown as exc:
        raise EntryMissing(exc, rev.commit) from None
    headers = {"X-Repo-Commit": rev.commit, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream" if f.content is None
               else "text/plain; charset=utf-8"}
    if f.lfs:
        headers["X-Linked-Etag"] = f'"{f.etag}"'
        headers["X-Linked-Size"] = str(f.size)
    if request.method == "HEAD":
        return empty(200, {**headers, "Content-Length": str(f.size)})
    if f.lfs:
        redirect = svc.blobs.redirect_url(f.blob)
        if redirect:
            return empty(307, {**headers, "Location": redirect})
    rng = parse_range(request.headers.get("range"), f.size)
    if rng is None:
        chunks = await run_in_threadpool(svc.hub.open, f, 0, f.size)
        return BlobResponse(chunks, 200, {**headers, "Content-Length": str(f.size)})
    start, end = rng
    chunks = await run_in_threadpool(svc.hub.open, f, start, end - start + 1)
    return BlobResponse(chunks, 206, {**headers, "Content-Length": str(end - start + 1),
                                      "Content-Range": f"bytes {start}-{end}/{f.size}"})


# ---- who am I -------------------------------------------------------------------------

async def whoami(request: Request) -> Response:
    """The signed-in caller (guarded: anonymous callers get 401). Namespaces where they
    hold a role are their ``orgs`` (their own namespace is not an org); ``role`` is
``write`` when the caller (and their token's scopes) may push somewhere, else ``read``."""
    identity = caller(request)
    if identity is None:  # auth off: everyone may do everything
        name, orgs, role, display, via = "anonymous", [], "write", "anonymous", "none"
    else:
        name = identity.name
        orgs = [{"name": ns, "type": "org", "roleInOrg": r}
                for ns, r in sorted(identity.roles.items()) if ns != name]
        writes = (identity.is_admin or any(r != "read" for r in identity.roles.values())) \
            and (identity.scopes is None
                 or any(a in (PUSH, DELETE, ADMIN) for a, _ in identity.scopes))
        role = "write" if writes else "read"
        display, via = identity.credential_name or identity.via, identity.via
    return JSONResponse({
        "type": "user", "id": name, "name": name, "fullname": name,
        "isPro": False, "canPay": False, "orgs": orgs,
        "auth": {"type": "access_token" if via == "token" else via,
                 "accessToken": {"displayName": display, "role": role}},
    })
