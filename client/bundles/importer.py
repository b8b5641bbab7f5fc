"""``assay import``: push everything a bundle holds into any OCI registry.

First the whole tar is checked (``Bundle.read``: names, structure, sizes) and every blob
hashed (``LayoutReader.verify``), so a damaged or tampered bundle is refused before a
byte is sent. Then each index.json entry goes to ``REGISTRY/<its repository>``: blobs
first, up to four at a time, streamed from their place in the tar (a ``client.blobs.Blob``
whose ``source`` reads the tar; ``RegistryClient.push_blob`` skips what the registry has
and mounts what this import already put in another repository), child manifests before
their index, each manifest byte for byte (its digest kept), under its tag or by digest;
referrers last, each after its subject. An assay registry is asked first whether the
blobs fit each namespace's quota.

An import that fails half-way leaves blobs and whole manifests already pushed (a registry
never shows a manifest whose blobs it lacks); running it again skips what is there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from client.blobs import Blob
from client.bundles.contents import Bundle, Entry, Item
from client.bundles.export import blob_label
from client.bundles.layout import blob_name
from client.progress import Transfers
from client.registry_client import RegistryClient

PARALLEL_BLOBS = 4


class TarBlobs:
    """A ``BlobSource``: a blob's bytes read from their place in the bundle's tar."""

    def __init__(self, bundle: Bundle):
        self.reader = bundle.reader

    def read(self, blob: Blob, offset: int, length: int,
             on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
        return self.reader.chunks(blob_name(blob.digest), offset, length, on_bytes)


@dataclass
class Imported:
    """One index.json entry once pushed: where, and what the registry holds of it."""

    entry: Entry
    reference: str  # REGISTRY/NAME:TAG@DIGEST or REGISTRY/NAME@DIGEST
    outcomes: dict[str, int] = field(default_factory=dict)


class Importer:
    def __init__(self, bundle: Bundle, client: RegistryClient, transfers: Transfers):
        self.bundle = bundle
        self.client = client
        self.transfers = transfers
        self.source = TarBlobs(bundle)
        self.blob_homes: dict[str, str] = {}  # digest -> a repository that has it now
        self.pushed: set[tuple[str, str]] = set()  # (repository, manifest digest)

    def run(self) -> list[Imported]:
        """Push every entry (models first, then referrers after their subjects)."""
        repositories = sorted({item.repository for item in self.bundle.items.values()})
        for name in repositories:
            self.client.intend_push(name)
            blobs = {b["digest"]: self._blob(b) for item in self.bundle.items.values()
                     if item.repository == name for b in item.blobs}
            self.client.check_push(name, list(blobs.values()))
        done: list[Imported] = []
        for entry in [e for e in self.bundle.entries if not e.referrer]:
            done.append(self._entry(entry))
        waiting = [e for e in self.bundle.entries if e.referrer]
        while waiting:
            # A referrer whose subject is another referrer of the bundle waits for it;
            # one whose subject is not in the bundle at all goes as it is.
            ready = [e for e in waiting if not self._subject_pending(e.item)]
            for entry in ready or waiting[:1]:
                done.append(self._entry(entry))
                waiting.remove(entry)
        return done

    def _subject_pending(self, item: Item) -> bool:
        key = (item.repository, item.subject)
        return key in self.bundle.items and key not in self.pushed

    def _entry(self, entry: Entry) -> Imported:
        outcomes: dict[str, int] = {}
        self._push(entry.item, entry.tag, outcomes)
        item = entry.item
        host = self.client.registry.host
        tag = f":{entry.tag}" if entry.tag else ""
        return Imported(entry, f"{host}/{item.repository}{tag}@{item.digest}", outcomes)

    def _push(self, item: Item, tag: str | None, outcomes: dict[str, int]) -> None:
        for child in item.children:
            self._push(self.bundle.items[(item.repository, child)], None, outcomes)
        key = (item.repository, item.digest)
        if key in self.pushed and tag is None:
            return
        if key not in self.pushed:
            blobs = [self._blob(b, item.repository) for b in item.blobs]
            unique = list({b.digest: b for b in blobs}.values())
            with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_BLOBS,
                                                           len(unique)))) as pool:
                for outcome in pool.map(lambda b: self._send(item.repository, b), unique):
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
        self.client.put_manifest(item.repository, tag or item.digest, item.content,
                                 item.media_type)
        self.pushed.add(key)
        self.client.remember(item.repository, [b["digest"] for b in item.blobs])

    def _blob(self, d: dict, repository: str | None = None) -> Blob:
        home = self.blob_homes.get(d["digest"])
        mounts = (home,) if home and home != repository else ()
        return Blob(str(d.get("mediaType") or "application/octet-stream"), d["digest"],
                    int(d["size"]), label=blob_label(d), source=self.source, mounts=mounts)

    def _send(self, repository: str, blob: Blob) -> str:
        task = self.transfers.task(f"push {blob.label}", blob.size)
        outcome = self.client.push_blob(repository, blob, task)
        task.done()
        self.blob_homes.setdefault(blob.digest, repository)
        return outcome
