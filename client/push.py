"""``assay push``: build the layout of a local model and send it (blobs, then the manifest).

Blobs go up to four at a time; each is skipped when the registry has it, mounted when the
local cache saw it in another repository of the same registry (or, for a Modelfile FROM a
model, when that model is in a repository of it), else uploaded (see ``registry_client``;
a base model's blobs on another registry are streamed from it). The manifest goes last,
under the tag.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from client.bases import BaseModels
from client.blobs import Blob
from client.errors import BadReference
from client.layouts import CardReader, Layout, build_layout
from client.progress import Transfers
from client.ref import Reference
from client.registry_client import RegistryClient

PARALLEL_BLOBS = 4


@dataclass
class PushResult:
    reference: Reference
    digest: str
    layout: Layout
    outcomes: dict[str, int]  # already present / mounted / uploaded -> number of blobs


def push(path: Path, ref: Reference, client: RegistryClient, transfers: Transfers, *,
         cards: CardReader, fmt: str | None = None,
         ollama_models: Path | None = None) -> PushResult:
    """Push the model at ``path`` to ``ref`` (a tag); ``cards`` reads its header.
    ``ollama_models``: the local Ollama store a Modelfile's FROM is looked up in (None:
    ``$OLLAMA_MODELS`` or ``~/.ollama/models``)."""
    if ref.digest:
        raise BadReference(f"push to a tag, not a digest: {ref}")
    client.intend_push(ref.name)  # one pull,push token from the first blob HEAD on

    def send(blob: Blob) -> str:
        streamed = blob.path or blob.source
        task = transfers.task(f"push {blob.label}", blob.size) if streamed else None
        outcome = client.push_blob(ref.name, blob, task)
        if task:
            task.done()
        return outcome

    with BaseModels(client, ollama_models) as bases:  # its clients serve the uploads too
        layout = build_layout(path, cards, fmt, transfers, bases)
        blobs = layout.blobs()
        with ThreadPoolExecutor(max_workers=min(PARALLEL_BLOBS, len(blobs))) as pool:
            outcomes = Counter(pool.map(send, blobs))
    digest = client.put_manifest(ref.name, ref.tag or "latest", layout.manifest(),
                                 layout.media_type)
    client.remember(ref.name, [b.digest for b in blobs])
    return PushResult(ref.with_digest(digest), digest, layout, dict(outcomes))
