"""Mirrors of a Hugging Face Hub endpoint (kind ``hf``): a revision fetched whole.

A Hub has no manifests: a revision is a commit of files. The mirror asks the Hub's API for
the revision's commit and files (``GET /api/models/<repo>/revision/<rev>?blobs=true``),
fetches each file it lacks (``/<repo>/resolve/<commit>/<path>``; redirects to a CDN are
followed, each hop checked by the outbound policy, and the token is not sent to another
host), and records them as a ModelPack manifest tagged with the revision's name, exactly as
a commit through assay's own Hub API would be: from then on OCI, Ollama and Hub clients all
read it, and it is verified like any push.

Large (LFS) files are fetched through ``mirror_blobs`` (one fetch per blob, streamed into
storage, checked against the sha256 the Hub listed); small files are read whole (at most
``MAX_SMALL_FILE``) and stored with their digest. Freshness works as for tags: the revision
is asked again after ``refresh_seconds``; the same commit is not fetched twice, and an
unreachable Hub leaves the cached revision served (with a log line).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import httpx

from client.transport import StdlibTransport
from registry.digests import check_tag
from registry.errors import ManifestUnknown, RemoteUnavailable, TagInvalid
from registry.formats import hub_commit as hc
from registry.services.mirror_blobs import CHUNK, Opened, Source
from registry.services.mirrors import Mirror

log = logging.getLogger("assay.mirror")

MAX_FILES = 10_000
MAX_SMALL_FILE = hc.MAX_INLINE_FILE  # a file without LFS info is read whole
WAIT_SECONDS = 3600.0
EPOCH = "1970-01-01T00:00:00Z"
_SHA1 = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"[0-9T:.Z+-]{10,40}")


def _commit_key(sha: str) -> str:
    """What ``mirror_tags.digest`` records for a Hub revision: its commit."""
    return f"hf:{sha}"


class HubUpstream:
    """Fetches revisions of ``hf`` mirrors for ``MirrorFetchService`` (its ``fetcher``)."""

    def __init__(self, fetcher):
        self.fetcher = fetcher

    def _http(self, m: Mirror) -> httpx.Client:
        _, token = self.fetcher.mirrors.credentials(m.namespace)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=m.base_url, headers=headers, follow_redirects=True,
            transport=StdlibTransport(policy=self.fetcher.settings.caller_policy),
            timeout=httpx.Timeout(60.0, connect=15.0))

    def _get(self, http: httpx.Client, m: Mirror, url: str, what: str, *,
             stream: bool = False) -> httpx.Response:
        try:
            resp = http.send(http.build_request("GET", url), stream=stream)
        except httpx.HTTPError as exc:
            raise RemoteUnavailable(f"{what}: the upstream {m.url} could not be reached: "
                                    f"{str(exc)[:200]}") from None
        if resp.status_code == 200:
            return resp
        resp.read()
        resp.close()
        if resp.status_code in (401, 403, 404):
            raise ManifestUnknown(f"{what} is not in the upstream {m.url} (or its token may "
                                  f"not read it: {resp.status_code})")
        raise RemoteUnavailable(f"{what}: the upstream {m.url} answered {resp.status_code}")

    def info(self, m: Mirror, name: str, revision: str) -> dict:
        """The revision's commit and files, as the upstream lists them."""
        up = m.upstream_name(name)
        what = f"{up}@{revision}"
        with self._http(m) as http:
            resp = self._get(http, m, f"/api/models/{up}/revision/{quote(revision, safe='')}"
                             "?blobs=true", what)
        try:
            info = resp.json()
        except ValueError:
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("sha"), str) \
                or not _SHA1.fullmatch(info["sha"]) or not isinstance(info.get("siblings"), list):
            raise RemoteUnavailable(f"{what}: the upstream {m.url} sent no usable revision")
        if len(info["siblings"]) > MAX_FILES:
            raise RemoteUnavailable(f"{what} has more than {MAX_FILES} files")
        return info

    def ensure(self, m: Mirror, name: str, revision: str) -> None:
        """Make ``revision`` (a branch or tag name) of ``name`` servable from storage:
        fetched if never fetched, or re-checked and fetched again if the upstream moved it
        since ``refresh_seconds``. A cached revision survives an unreachable upstream."""
        try:
            tag = check_tag(revision)
        except TagInvalid:
            return  # a commit id or a malformed name: the Hub API answers for it
        f = self.fetcher
        state = f._tag_state(name, tag)
        if state is not None and f.fresh(m, state) and f._known_tag(name, tag):
            return
        try:
            info = self.info(m, name, revision)
        except RemoteUnavailable as exc:
            if state is None:
                raise
            log.warning("mirror %s: %s; serving the cached %s:%s", m.namespace, exc.message,
                        name, tag)
            return
        key = _commit_key(info["sha"])
        if state is not None and state.digest == key and f._known_tag(name, tag):
            f._checked(name, tag, key)
            return
        self._store(m, name, tag, info)
        f._checked(name, tag, key)

    def _store(self, m: Mirror, name: str, tag: str, info: dict) -> str:
        up, sha = m.upstream_name(name), info["sha"]
        files: dict[str, hc.Entry] = {}
        for sib in info["siblings"]:
            path = hc.check_path(sib.get("rfilename") if isinstance(sib, dict) else None)
            files[path] = self._file(m, name, up, sha, path, sib.get("lfs"))
        created = info.get("lastModified")
        if not isinstance(created, str) or not _DATE.fullmatch(created):
            created = EPOCH
        uploads = self.fetcher.uploads
        config = hc.config_bytes(files, up, created)
        config_digest = uploads.put_bytes(name, config, quota=True)
        manifest = hc.manifest_bytes(files, config, config_digest, hc.Header("", "", None),
                                     created)
        digest = self.fetcher.manifests.put(name, tag, manifest, hc.OCI_MANIFEST).digest
        log.info("mirror %s: stored %s:%s (%s, commit %s of %s)", m.namespace, name, tag,
                 digest, sha, m.url)
        return digest

    def _file(self, m: Mirror, name: str, up: str, sha: str, path: str, lfs) -> hc.Entry:
        url = f"/{up}/resolve/{sha}/{quote(path)}"
        if isinstance(lfs, dict) and isinstance(lfs.get("sha256"), str) \
                and _SHA256.fullmatch(lfs["sha256"]) and isinstance(lfs.get("size"), int) \
                and lfs["size"] >= 0:
            digest, size = f"sha256:{lfs['sha256']}", lfs["size"]

            def open_file() -> Opened:
                http = self._http(m)
                try:
                    resp = self._get(http, m, url, f"{up}/{path}", stream=True)
                except BaseException:
                    http.close()
                    raise

                def close() -> None:
                    resp.close()
                    http.close()
                return Opened(resp.iter_bytes(CHUNK), size, close)

            self.fetcher.wait_or_fetch(name, digest, WAIT_SECONDS, Source(open_file, size))
            return hc.Entry(digest, size)
        with self._http(m) as http:
            resp = self._get(http, m, url, f"{up}/{path}", stream=True)
            try:
                data = bytearray()
                for chunk in resp.iter_bytes(CHUNK):
                    data += chunk
                    if len(data) > MAX_SMALL_FILE:
                        raise RemoteUnavailable(
                            f"{up}/{path} has no LFS size and sha256 and is larger than "
                            f"{MAX_SMALL_FILE} bytes: not mirrored")
            finally:
                resp.close()
        digest = self.fetcher.uploads.put_bytes(name, bytes(data), quota=True)
        return hc.Entry(digest, len(data))
