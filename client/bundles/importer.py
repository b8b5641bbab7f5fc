"""``assay import``: push everything a bundle holds into any OCI registry.

First the whole tar is checked (``Bundle.read``: names, structure, sizes) and every blob
hashed (``LayoutReader.verify``), so a damaged or tampered bundle is refused before a
byte is sent. An assay registry is then asked whether the blobs fit each namespace's
quota. Then, model by model (each index.json entry that is no referrer), into
``REGISTRY/<its repository>``:

1. every blob of the model, of its child manifests and of its referrers in the bundle (and
   theirs), up to four at a time, streamed from their place in the tar (a
   ``client.blobs.Blob`` whose ``source`` reads the tar; ``RegistryClient.push_blob`` skips
   what the registry has and mounts what this import already put in another repository);
2. the child manifests by digest, then the model's manifest under its tag (or by digest);
3. its referrers' manifests, each after its subject;
4. ``after(imported)``: on assay, the carried results are adopted here.

Every manifest goes byte for byte, so its digest is kept. The manifests of one model follow
one another with no upload between them, and the adoption comes right after: a
verification worker polling the queue rarely claims the model's new job first (if it
does, it runs the model, and its verdict is recorded after the adopted one). Referrers
whose subject is no model of the bundle go last.

An import that fails half-way leaves blobs and whole manifests already pushed (a registry
never shows a manifest whose blobs it lacks); running it again skips what is there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
    """One index.json entry once pushed, and where."""

    entry: Entry
    reference: str  # REGISTRY/NAME:TAG@DIGEST or REGISTRY/NAME@DIGEST


class Importer:
    def __init__(self, bundle: Bundle, client: RegistryClient, transfers: Transfers):
        self.bundle = bundle
        self.client = client
        self.transfers = transfers
        self.source = TarBlobs(bundle)
        self.blob_homes: dict[str, str] = {}  # digest -> a repository that has it now
        self.uploaded: set[tuple[str, str]] = set()  # (repository, blob digest)
        self.pushed: set[tuple[str, str]] = set()  # (repository, manifest digest)
        self.outcomes: Counter[str] = Counter()  # blobs: uploaded, already present, mounted

    def run(self, after: Callable[[Imported], None] | None = None) -> list[Imported]:
        """Push every entry (see the module's text); ``after`` is called with each model
        once it and its referrers are in."""
        self._check_quotas()
        done: list[Imported] = []
        waiting = [e for e in self.bundle.entries if e.referrer]
        for entry in [e for e in self.bundle.entries if not e.referrer]:
            tree = self._tree(entry.item)
            carried = self._carried(tree, waiting)
            self._upload([*tree, *(e.item for e in carried)])
            model = self._put(entry)
            done.append(model)
            for referrer in carried:
                done.append(self._put(referrer))
                waiting.remove(referrer)
            if after is not None:
                after(model)
        for entry in self._carried([], waiting, everything=True):
            self._upload([entry.item])
            done.append(self._put(entry))
        return done

    def _check_quotas(self) -> None:
        for name in sorted({item.repository for item in self.bundle.items.values()}):
            self.client.intend_push(name)
            blobs = {b["digest"]: self._blob(b, name) for item in self.bundle.items.values()
                     if item.repository == name for b in item.blobs}
            self.client.check_push(name, list(blobs.values()))

    def _tree(self, item: Item) -> list[Item]:
        """An index's child manifests (depth first), then the item itself."""
        found = []
        for digest in item.children:
            found += self._tree(self.bundle.items[(item.repository, digest)])
        return [*found, item]

    def _carried(self, tree: list[Item], referrers: list[Entry], *,
                 everything: bool = False) -> list[Entry]:
        """The referrers of ``tree``'s manifests and theirs, each after its subject
        (``everything``: all of ``referrers``, in that order as far as it goes)."""
        subjects = {(i.repository, i.digest) for i in tree}
        found: list[Entry] = []
        while True:
            more = [e for e in referrers if e not in found and
                    (e.item.repository, e.item.subject) in subjects]
            if not more and everything:
                more = [e for e in referrers if e not in found][:1]
            if not more:
                return found
            found += more
            subjects |= {(e.item.repository, e.item.digest) for e in more}

    def _upload(self, items: list[Item]) -> None:
        blobs = {(i.repository, b["digest"]): (i.repository, b) for i in items
                 for b in i.blobs}
        todo = [(repo, self._blob(b, repo)) for key, (repo, b) in blobs.items()
                if key not in self.uploaded]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_BLOBS, len(todo))) as pool:
            for outcome in pool.map(lambda job: self._send(*job), todo):
                self.outcomes[outcome] += 1

    def _put(self, entry: Entry) -> Imported:
        """The entry's child manifests (by digest), then its manifest under its tag."""
        for item in self._tree(entry.item)[:-1]:
            if (item.repository, item.digest) not in self.pushed:
                self._put_manifest(item, None)
        item = entry.item
        self._put_manifest(item, entry.tag)
        tag = f":{entry.tag}" if entry.tag else ""
        return Imported(entry, f"{self.client.registry.host}/{item.repository}{tag}@"
                               f"{item.digest}")

    def _put_manifest(self, item: Item, tag: str | None) -> None:
        self.client.put_manifest(item.repository, tag or item.digest, item.content,
                                 item.media_type)
        self.pushed.add((item.repository, item.digest))
        self.client.remember(item.repository, [b["digest"] for b in item.blobs])

    def _blob(self, d: dict, repository: str) -> Blob:
        home = self.blob_homes.get(d["digest"])
        mounts = (home,) if home and home != repository else ()
        return Blob(str(d.get("mediaType") or "application/octet-stream"), d["digest"],
                    int(d["size"]), label=blob_label(d), source=self.source, mounts=mounts)

    def _send(self, repository: str, blob: Blob) -> str:
        task = self.transfers.task(f"push {blob.label}", blob.size)
        outcome = self.client.push_blob(repository, blob, task)
        task.done()
        self.blob_homes.setdefault(blob.digest, repository)
        self.uploaded.add((repository, blob.digest))
        return outcome
