"""Download one blob into a file: parallel ranged parts, resumable, digest-verified.

A blob larger than ``part_size`` is fetched as parts ``Range: bytes=a-b`` by a thread pool;
each answer must be ``206`` with the matching ``Content-Range``. Bytes go into
``<file>.part``; ``<file>.part.json`` records the finished parts::

    {"digest": "sha256:...", "size": N, "part_size": P, "done": [0, 1, 4]}

A rerun after an interruption (Ctrl-C, a dropped connection that outlived the retries, a
crash) fetches only the parts not listed. The main thread hashes the parts in order while
later ones are still arriving; the file is renamed into place only when the whole digest
matches. A registry that answers ``200`` to a Range request (ignoring it) does not corrupt
anything: the download starts over as one plain stream. Smaller blobs are one plain GET.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from registry.client.errors import IntegrityError, response_error
from registry.client.progress import Task, Transfers
from registry.client.registry_client import RegistryClient

MiB = 1024 * 1024
PART_SIZE = 32 * MiB
WORKERS = 4
READ_BLOCK = MiB
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class RangeIgnored(Exception):
    """The registry answered a Range request with the whole blob (200)."""


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class Downloader:
    """Fetches blobs of one repository; ``stats`` counts parts fetched and reused."""

    def __init__(self, client: RegistryClient, transfers: Transfers, *,
                 part_size: int = PART_SIZE, workers: int = WORKERS):
        self.client = client
        self.transfers = transfers
        self.part_size = part_size
        self.workers = workers

    def fetch(self, name: str, digest: str, size: int, dest: Path, label: str = "") -> str:
        """Make ``dest`` hold blob ``digest``: "present", "downloaded" or "resumed"."""
        label = label or dest.name
        if dest.is_file() and dest.stat().st_size == size and file_digest(dest) == digest:
            self.client.count("file present")
            return "present"
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        sidecar = dest.with_name(dest.name + ".part.json")
        url = self.client.blob_url(name, digest)
        what = f"download {label}"
        task = self.transfers.task(label, size)
        outcome = "downloaded"
        if size > self.part_size:
            try:
                actual, reused = self._parts(url, partial, sidecar, digest, size, task, what)
                outcome = "resumed" if reused else outcome
            except RangeIgnored:
                self.client.count("range ignored")
                actual = self._whole(url, partial, size, task, what)
        else:
            actual = self._whole(url, partial, size, task, what)
        if actual != digest:
            for path in (partial, sidecar):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise IntegrityError(f"{what}: the bytes received hash to {actual}, not {digest}; "
                                 "the partial download was discarded")
        os.replace(partial, dest)
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        task.done()
        return outcome

    # ------------------------------------------------------------------ one stream
    def _whole(self, url: str, partial: Path, size: int, task: Task, what: str) -> str:
        def attempt() -> str:
            h = hashlib.sha256()
            written = 0
            task.reset_to(0)
            with open(partial, "wb") as f:
                resp = self.client.send("GET", url, stream=True, follow_redirects=True)
                try:
                    if resp.status_code != 200:
                        resp.read()
                        raise response_error(resp, what)
                    for chunk in resp.iter_bytes(READ_BLOCK):
                        written += len(chunk)
                        if written > size:
                            raise IntegrityError(f"{what}: the registry sent more than the "
                                                 f"{size} bytes the manifest declares")
                        h.update(chunk)
                        f.write(chunk)
                        task.advance(len(chunk))
                finally:
                    resp.close()
            if written != size:
                raise httpx.RemoteProtocolError(f"the body ended after {written} of {size} bytes")
            return "sha256:" + h.hexdigest()

        return self.client.call(attempt, what)

    # ------------------------------------------------------------------ ranged parts
    def _load_done(self, sidecar: Path, partial: Path, digest: str, size: int,
                   count: int) -> set[int]:
        try:
            state = json.loads(sidecar.read_text())
            if (state.get("digest"), state.get("size"), state.get("part_size")) != (
                    digest, size, self.part_size) or partial.stat().st_size != size:
                return set()
            return {i for i in state.get("done", []) if isinstance(i, int) and 0 <= i < count}
        except (OSError, ValueError, AttributeError):
            return set()

    def _save_done(self, sidecar: Path, digest: str, size: int, done: set[int]) -> None:
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps({"digest": digest, "size": size, "part_size": self.part_size,
                                   "done": sorted(done)}))
        os.replace(tmp, sidecar)

    def _parts(self, url: str, partial: Path, sidecar: Path, digest: str, size: int,
               task: Task, what: str) -> tuple[str, int]:
        plan = [(i, off, min(self.part_size, size - off))
                for i, off in enumerate(range(0, size, self.part_size))]
        done = self._load_done(sidecar, partial, digest, size, len(plan))
        reused = len(done)
        self.client.count("parts reused", reused)
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
        lock = threading.Lock()
        try:
            if not done:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)
            self._save_done(sidecar, digest, size, done)
            task.reset_to(sum(length for i, _, length in plan if i in done))

            def work(index: int, offset: int, length: int) -> None:
                self._fetch_part(url, fd, offset, length, size, task, what)
                with lock:
                    done.add(index)
                    self._save_done(sidecar, digest, size, done)

            hasher = hashlib.sha256()
            pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="part")
            try:
                futures = {i: pool.submit(work, i, off, length)
                           for i, off, length in plan if i not in done}
                for i, off, length in plan:  # hash in order while later parts arrive
                    if i in futures:
                        futures[i].result()
                    _hash_range(fd, off, length, hasher)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                pool.shutdown(wait=True)
        finally:
            os.close(fd)
        return "sha256:" + hasher.hexdigest(), reused

    def _fetch_part(self, url: str, fd: int, offset: int, length: int, size: int,
                    task: Task, what: str) -> None:
        last = offset + length - 1
        wanted = f"bytes={offset}-{last}"

        def attempt() -> None:
            written = 0
            try:
                resp = self.client.send("GET", url, headers={"Range": wanted}, stream=True,
                                        follow_redirects=True)
                try:
                    if resp.status_code == 200:
                        raise RangeIgnored()
                    if resp.status_code != 206:
                        resp.read()
                        raise response_error(resp, f"{what} ({wanted})")
                    answered = resp.headers.get("Content-Range", "")
                    m = _CONTENT_RANGE.fullmatch(answered.strip())
                    if not m or (int(m[1]), int(m[2])) != (offset, last) or \
                            m[3] not in ("*", str(size)):
                        raise IntegrityError(f"{what}: asked for {wanted}, the registry "
                                             f"answered Content-Range {answered!r}")
                    for chunk in resp.iter_bytes(READ_BLOCK):
                        if written + len(chunk) > length:
                            raise IntegrityError(f"{what}: more bytes than asked for {wanted}")
                        _pwrite_all(fd, chunk, offset + written)
                        written += len(chunk)
                        task.advance(len(chunk))
                finally:
                    resp.close()
                if written != length:
                    raise httpx.RemoteProtocolError(
                        f"part {wanted} ended after {written} of {length} bytes")
                self.client.count("parts fetched")
            except BaseException:
                task.advance(-written)
                raise

        self.client.call(attempt, what)


def _hash_range(fd: int, offset: int, length: int, hasher) -> None:
    end = offset + length
    while offset < end:
        block = os.pread(fd, min(4 * MiB, end - offset), offset)
        if not block:
            raise IntegrityError("the partial file is shorter than expected")
        hasher.update(block)
        offset += len(block)
