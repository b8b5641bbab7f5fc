"""A small local cache of where blobs were seen, for cross-repository mounts.

``$ASSAY_CACHE_DIR/blob-locations.json`` (default ``~/.cache/assay/``)::

    {"version": 1, "hosts": {"HOST:PORT": {"sha256:...": {"team/model": <unix time>}}}}

After a push or pull the client records that each blob lives in that repository; a later
push of the same blob to another repository on the same registry first tries
``POST ?mount=<digest>&from=<repository>``. The cache is only a hint: a stale entry costs one
request, a missing or unreadable file is an empty cache, and a failed write is ignored.
Concurrent writers merge: the file is re-read under the write and replaced atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

MAX_DIGESTS_PER_HOST = 20_000
MAX_REPOSITORIES_PER_DIGEST = 8


def cache_dir() -> Path:
    configured = os.environ.get("ASSAY_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "assay"


def _merge(into: dict, source: dict) -> None:
    for host, entries in source.items():
        for digest, repos in entries.items():
            merged = into.setdefault(host, {}).setdefault(digest, {})
            for repo, seen in repos.items():
                merged[repo] = max(seen, merged.get(repo, 0))


class BlobLocations:
    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "blob-locations.json"
        self._hosts: dict[str, dict[str, dict[str, float]]] | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            hosts = data.get("hosts") if isinstance(data, dict) else None
            return hosts if isinstance(hosts, dict) else {}
        except (OSError, ValueError):
            return {}

    def _loaded(self) -> dict:
        if self._hosts is None:
            self._hosts = self._read()
        return self._hosts

    def repositories(self, host: str, digest: str) -> list[str]:
        """Repositories on ``host`` known to hold ``digest``, most recently seen first."""
        with self._lock:
            seen = self._loaded().get(host, {}).get(digest) or {}
        return [repo for repo, _ in sorted(seen.items(), key=lambda kv: -kv[1])]

    def remember(self, host: str, repository: str, digests: Iterable[str]) -> None:
        """Record and save (merged with whatever another process wrote meanwhile)."""
        now = time.time()
        digests = list(digests)
        with self._lock:
            hosts = self._read()
            _merge(hosts, self._hosts or {})
            entries = hosts.setdefault(host, {})
            for digest in digests:
                entries.setdefault(digest, {})[repository] = now
            for d, repos in entries.items():
                if len(repos) > MAX_REPOSITORIES_PER_DIGEST:
                    keep = sorted(repos.items(), key=lambda kv: -kv[1])
                    entries[d] = dict(keep[:MAX_REPOSITORIES_PER_DIGEST])
            if len(entries) > MAX_DIGESTS_PER_HOST:
                newest = sorted(entries.items(), key=lambda kv: -max(kv[1].values(), default=0))
                hosts[host] = dict(newest[:MAX_DIGESTS_PER_HOST])
            self._hosts = hosts
            self._write(hosts)

    def _write(self, hosts: dict) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": 1, "hosts": hosts}, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
