"""The base model of a Modelfile whose ``FROM`` names a model rather than a file.

A name is Ollama's ``[HOST[:PORT]/][NAMESPACE/]NAME[:TAG]`` (``NAME`` alone means
``library/NAME``; the tag defaults to ``latest``; ``@sha256:...`` pins a digest on a
registry). It is looked up, as ``ollama create`` looks it up, in this order:

1. the local Ollama store, ``$OLLAMA_MODELS`` (default ``~/.ollama/models``):
   ``manifests/HOST/NAMESPACE/NAME/TAG`` and ``blobs/sha256-<hex>``, where a short name's
   host is ``registry.ollama.ai`` (what ``ollama pull gemma3:270m`` wrote). Ollama prefers
   the copy it has; so does assay, so a Modelfile means the same model to both;
2. a registry: a full name on the registry it names (``127.0.0.1:5000/team/gemma3``), a
   short one on the registry being pushed to (``gemma3:270m`` is ``library/gemma3:270m``
   there).

The base's layers (weights, template, params, system, license, adapters, projector) are
reused as they are, never re-read or re-hashed: blobs of the local store are sent from
their files (content-addressed already), after a mount from the same name on the target
registry is tried, so nothing is uploaded when the registry already holds them; blobs on
the target registry are mounted across repositories; blobs on another registry are
streamed through (ranged GETs feeding the upload, nothing stored locally). How the
Modelfile's instructions then replace or extend those parts is ``layouts.merge_modelfile``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from client import mediatypes as mt
from client.blobs import BLOCK, Blob
from client.credentials import lookup
from client.errors import BadReference, ClientError, InputError, NotFoundError, response_error
from client.pull import SMALL_LAYER_LIMIT, fetch_small, resolve_manifest
from client.ref import DIGEST_RE, Reference, Registry, parse_reference
from client.registry_client import RegistryClient

OLLAMA_HOST = "registry.ollama.ai"  # the host of a short name in the local store
OLLAMA_TENSOR = mt.OLLAMA_PREFIX + "tensor"  # per-tensor layers: not a GGUF model


def ollama_models_dir() -> Path:
    """``$OLLAMA_MODELS``, else ``~/.ollama/models`` (Ollama's own default)."""
    configured = os.environ.get("OLLAMA_MODELS")
    return Path(configured or "~/.ollama/models").expanduser()


def looks_like_path(text: str) -> bool:
    """A FROM value that can only be meant as a file (and so is never a model name)."""
    return (text.startswith((".", "/", "~", "\\")) or text.lower().endswith(".gguf")
            or "\\" in text)


@dataclass(frozen=True)
class ModelName:
    """A FROM name, resolved: ``registry`` is where to look it up after the local store,
    ``store`` its path under the store's ``manifests/`` (None for a digest), ``short``
    whether it named no host (then the registry is the one pushed to)."""

    registry: Reference
    store: tuple[str, ...] | None
    short: bool


def parse_model_name(text: str, target: Registry) -> ModelName:
    """``NAME[:TAG]``, ``NAMESPACE/NAME[:TAG]`` or ``HOST[:PORT]/NAMESPACE/NAME[:TAG]``
    (any of them ``@DIGEST``); ``BadReference`` for anything else."""
    text = text.strip()
    path = text.split("@", 1)[0]
    scheme = "://" in path
    segments = path.split("://", 1)[-1].split("/")
    if not scheme and len(segments) < 3:  # short: on the registry pushed to
        named = text if len(segments) == 2 else f"library/{text}"
        parsed = parse_reference(f"{target.host}/{named}")
        ref = Reference(target, parsed.name, parsed.tag, parsed.digest)
        host, short = OLLAMA_HOST, True
    else:
        ref = parse_reference(text)
        host, short = ref.registry.host, False
    store = None if ref.digest else (host, *ref.name.split("/"), ref.tag or "latest")
    return ModelName(ref, store, short)


@dataclass
class BaseModel:
    """What FROM named: its layers (as blobs ready to push), config and parameters."""

    source: str  # where it was found, for messages: "127.0.0.1:5000/library/gemma3:270m"
    config: dict
    layers: list[Blob]
    params: dict = field(default_factory=dict)  # its params layers, merged (first wins)


class RegistryBlobs:
    """Blob bytes read from a repository of a registry (a ``blobs.BlobSource``)."""

    def __init__(self, client: RegistryClient, name: str):
        self.client, self.name = client, name

    def read(self, blob: Blob, offset: int, length: int,
             on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
        what = f"copy {blob.label or blob.digest[:19]} from {self.client.registry.host}/" \
               f"{self.name}"
        headers = {"Accept-Encoding": "identity"}
        ranged = offset > 0 or length < blob.size
        if ranged:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        url = self.client.blob_url(self.name, blob.digest)
        resp = self.client.call(lambda: self.client.send(
            "GET", url, headers=headers, stream=True, follow_redirects=True), what)
        try:
            if resp.status_code not in (200, 206):
                resp.read()
                raise response_error(resp, what)
            skip = offset if ranged and resp.status_code == 200 else 0  # Range ignored
            remaining = length
            for block in resp.iter_bytes(BLOCK):
                if skip:
                    cut = min(skip, len(block))
                    block, skip = block[cut:], skip - cut
                block = block[:remaining]
                if block:
                    remaining -= len(block)
                    if on_bytes:
                        on_bytes(len(block))
                    yield block
                if not remaining:
                    break
        finally:
            resp.close()
        if remaining:
            raise ClientError(f"{what}: the registry sent {length - remaining} of {length} "
                              "bytes")


class BaseModels:
    """Finds the base models of Modelfiles pushed to ``target`` (its client). Clients it
    opens for other registries are closed with it (a context manager)."""

    def __init__(self, target: RegistryClient, ollama_models: Path | None = None):
        self.target = target
        self.store = ollama_models or ollama_models_dir()
        self._clients: dict[str, RegistryClient] = {}

    def __enter__(self) -> BaseModels:
        return self

    def __exit__(self, *exc) -> None:
        for client in self._clients.values():
            client.close()

    def find(self, text: str, where: str) -> BaseModel:
        """The model FROM ``text`` names (``where``: "Modelfile line 1", for errors)."""
        said = f"{where}: FROM {text}"
        try:
            name = parse_model_name(text, self.target.registry)
        except BadReference:
            raise InputError(f"{said}: no such file, and not a model name "
                             "([HOST[:PORT]/][NAMESPACE/]NAME[:TAG])") from None
        found = self._from_store(name, said)
        if found is not None:
            return found
        ref = name.registry
        client = self._client(ref.registry)
        try:
            doc, _ = resolve_manifest(client, ref)
        except NotFoundError:
            raise InputError(f"{said}: not found in {self.store} nor in {ref}") from None
        except ClientError as exc:
            raise ClientError(f"{said}: not found in {self.store}, and {exc}") from None
        return self._from_registry(client, ref, doc, said)

    # ------------------------------------------------------------------ the local store
    def _from_store(self, name: ModelName, said: str) -> BaseModel | None:
        if name.store is None:
            return None
        path = self.store.joinpath("manifests", *name.store)
        if not path.is_file():
            return None
        host, *repo, tag = name.store
        shown = f"{'/'.join(repo)}:{tag}"  # as Ollama names it
        shown = shown.removeprefix("library/") if name.short else f"{host}/{shown}"
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError(f"{said}: cannot read {path}: {exc}") from None
        layers = _descriptors(doc, f"{said}: {path}")

        def blob_file(descriptor: dict) -> Path:
            digest, size = descriptor["digest"], descriptor["size"]
            blob = self.store / "blobs" / digest.replace(":", "-")
            try:
                actual = blob.stat().st_size
            except OSError:
                raise InputError(f"{said}: {self.store} lacks blob {digest} of {shown} "
                                 f"(run ollama pull {shown})") from None
            if actual != size:
                raise InputError(f"{said}: {blob} holds {actual} bytes, the manifest says "
                                 f"{size} (run ollama pull {shown})")
            return blob

        # The same name on the target registry may hold these blobs: mount from it first.
        mounts = (name.registry.name,) if self._same(name.registry.registry) else ()
        blobs = [_blob(d, shown, path=blob_file(d), mounts=mounts) for d in layers]
        read = {b.digest: _reader(b.path, b.size, f"{said}: {b.path}") for b in blobs}
        config_file = blob_file(doc["config"])
        config = _json(_reader(config_file, doc["config"]["size"], f"{said}: {config_file}")(),
                       f"{said}: the config of {shown}")
        return BaseModel(f"{shown} in {self.store}", config, blobs,
                         _params(blobs, read, f"{said}: {shown}"))

    # ------------------------------------------------------------------ a registry
    def _same(self, registry: Registry) -> bool:
        """Whether ``registry`` is the one pushed to (by host: ``--insecure`` may have
        changed the target's scheme)."""
        return registry.host == self.target.registry.host

    def _client(self, registry: Registry) -> RegistryClient:
        if self._same(registry):
            return self.target
        if registry.host not in self._clients:
            # The Modelfile's author named this host, not the user: only credentials kept
            # for it (assay login, Docker's config) go there, never the environment's
            # unbound ASSAY_TOKEN / ASSAY_USERNAME+PASSWORD (see client.credentials).
            credentials = lookup(registry.host, registry.scheme, ambient=False)
            self._clients[registry.host] = RegistryClient(registry, credentials=credentials)
        return self._clients[registry.host]

    def _from_registry(self, client: RegistryClient, ref: Reference, doc: dict,
                       said: str) -> BaseModel:
        layers = _descriptors(doc, f"{said}: {ref}")
        source = RegistryBlobs(client, ref.name)
        same = client is self.target
        shown = str(ref).removeprefix(f"{client.registry.host}/") if same else str(ref)
        blobs = [_blob(d, shown, source=source, mounts=(ref.name,) if same else ())
                 for d in layers]

        def small(descriptor: dict) -> bytes:
            try:
                return fetch_small(client, ref.name, descriptor)
            except ClientError as exc:
                raise ClientError(f"{said}: {ref}: {exc}") from None

        read = {b.digest: (lambda d=b.descriptor(): small(d)) for b in blobs}
        config = _json(small(doc["config"]), f"{said}: the config of {ref}")
        return BaseModel(str(ref), config, blobs, _params(blobs, read, f"{said}: {ref}"))


def _descriptors(doc: dict, said: str) -> list[dict]:
    """The manifest's layers, checked: an Ollama GGUF model with well-formed descriptors."""
    config = doc.get("config") if isinstance(doc, dict) else None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list) or not _valid(config):
        raise ClientError(f"{said} is not an image manifest")
    if not all(_valid(d) for d in layers):
        raise ClientError(f"{said}: a layer descriptor is malformed")
    types = [d["mediaType"] for d in layers]
    if mt.OLLAMA_MODEL not in types or OLLAMA_TENSOR in types:
        raise ClientError(f"{said} is not an Ollama GGUF model (its layers are "
                          f"{', '.join(sorted(set(types))) or 'none'}); FROM takes one")
    return layers


def _valid(descriptor) -> bool:
    return (isinstance(descriptor, dict) and isinstance(descriptor.get("mediaType"), str)
            and isinstance(descriptor.get("digest"), str)
            and bool(DIGEST_RE.fullmatch(descriptor["digest"]))
            and descriptor["digest"].startswith("sha256:")
            and isinstance(descriptor.get("size"), int) and descriptor["size"] >= 0)


def _blob(descriptor: dict, shown: str, **kw) -> Blob:
    kind = descriptor["mediaType"].removeprefix(mt.OLLAMA_PREFIX)
    return Blob(descriptor["mediaType"], descriptor["digest"], descriptor["size"],
                label=f"{shown} {kind}", **kw)


def _reader(path: Path, size: int, said: str) -> Callable[[], bytes]:
    def read() -> bytes:
        if size > SMALL_LAYER_LIMIT:
            raise ClientError(f"{said} is too large ({size} bytes) for a config or params")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputError(f"{said}: {exc.strerror or exc}") from None

    return read


def _json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise ClientError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise ClientError(f"{what} is not a JSON object")
    return value


def _params(blobs: list[Blob], read: dict[str, Callable[[], bytes]], said: str) -> dict:
    """The base's parameters: its params layers merged, an earlier layer's key winning (as
    Ollama merges them)."""
    params: dict = {}
    for blob in blobs:
        if blob.media_type == mt.OLLAMA_PARAMS:
            value = _json(read[blob.digest](), f"{said}: its params layer")
            for key, item in value.items():
                params.setdefault(key, item)
    return params
