"""A small local cache of file digests, so pushing an unchanged file again skips its hash.

``$ASSAY_CACHE_DIR/file-digests.json`` (default ``~/.cache/assay/``)::

    {"version": 1, "files": {"/abs/path": {"dev", "ino", "size", "mtime_ns", "ctime_ns",
                                           "digest", "seen"}}}

An entry is used only while the file's device, inode, size, mtime and ctime are all
unchanged (ctime cannot be set back by any user-level tool, so an in-place edit always
invalidates it). Like git's index it avoids "racy" entries: a file modified less than
``RACY_SECONDS`` before it was hashed is not recorded, since a second edit within the
same timestamp tick could leave every field equal. A wrong digest could not corrupt a
registry anyway (uploads are verified by the registry) but could make a push skip a
blob; these rules make that require tampering with the cache file itself. The cache is
a hint: unreadable means empty, a failed write is ignored, concurrent writers merge.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

from client.locations import cache_dir

MAX_ENTRIES = 10_000
RACY_SECONDS = 2.0
_lock = threading.Lock()


def _path() -> Path:
    return cache_dir() / "file-digests.json"


def _identity(st: os.stat_result) -> dict:
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _read() -> dict:
    try:
        data = json.loads(_path().read_text())
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError):
        return {}


def lookup(path: Path, st: os.stat_result) -> str | None:
    """The recorded digest of ``path`` if the file is exactly as it was when hashed."""
    if os.environ.get("ASSAY_NO_DIGEST_CACHE"):
        return None
    entry = _read().get(str(path.resolve()))
    if not isinstance(entry, dict):
        return None
    if {k: entry.get(k) for k in _identity(st)} != _identity(st):
        return None
    digest = entry.get("digest")
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


def record(path: Path, before: os.stat_result, after: os.stat_result, digest: str,
           hashed_at_ns: int) -> None:
    """Remember ``digest`` for ``path`` hashed from ``before`` to ``after`` (stats taken
    around the hash). Skipped when the file changed meanwhile or was racily recent."""
    if os.environ.get("ASSAY_NO_DIGEST_CACHE"):
        return
    if _identity(before) != _identity(after):
        return
    if hashed_at_ns - before.st_mtime_ns < RACY_SECONDS * 1e9 or \
            hashed_at_ns - before.st_ctime_ns < RACY_SECONDS * 1e9:
        return
    with _lock:
        files = _read()
        files[str(path.resolve())] = {**_identity(after), "digest": digest,
                                      "seen": time.time()}
        if len(files) > MAX_ENTRIES:
            newest = sorted(files.items(), key=lambda kv: -float(kv[1].get("seen", 0)))
            files = dict(newest[:MAX_ENTRIES])
        target = _path()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": 1, "files": files}, separators=(",", ":")))
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
