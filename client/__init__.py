"""The ``assay`` client: push and pull models to and from any OCI registry.

Modules, from the bottom up:

- ``ref``: ``HOST[:PORT]/NAME[:TAG|@DIGEST]`` and the HTTP/HTTPS choice.
- ``errors``: the exception hierarchy and ``reported()``, which turns any failure into one
  ``error: ...`` line on stderr.
- ``registry_client``: the OCI HTTP client (httpx + tenacity retries): manifests, tags,
  catalog, blob push (skip, mount, monolithic or chunked upload), assay's REST API.
- ``outbound``: where a process may connect when someone else named the address (the
  policy remote validation and webhook deliveries connect through).
- ``credentials``, ``auth``: where credentials come from (environment, ``assay login``'s
  file, Docker's config) and the ``httpx.Auth`` that answers challenges (Docker token
  auth, Basic) with a per-scope token cache; ``account``: ``login``, ``logout``, ``key``,
  ``token``.
- ``locations``: the local cache of where blobs were seen, for cross-repository mounts.
- ``blobs``, ``mediatypes``: blobs to push; the media types and annotations we speak.
- ``modelfile``: Ollama Modelfile parsing and writing.
- ``layouts``: a .gguf, a Modelfile or a safetensors directory -> Ollama, Docker Model
  Runner or CNCF ModelPack manifest.
- ``download``: parallel, ranged, resumable, verified blob downloads.
- ``push``, ``pull``, ``show``: the commands' logic; ``commands`` prints their results
  (``registry.cli`` declares the click commands).
- ``progress``: ``rich.progress`` bars, only on a terminal.

Nothing here imports the server (``registry``): the server and the CLI import the client.
Reading a model's header for a push is the one thing both sides do; the caller hands the
registry's readers in (``layouts.CardReader``).
"""

import sys as _sys

# httpx's package import also loads its command-line tool (click, rich, pygments: ~30 ms of
# every `assay pull`'s start-up). A None entry makes that one optional import fail, which
# httpx handles by leaving `httpx.main` unavailable; nothing here uses it.
if "httpx" not in _sys.modules:
    _sys.modules.setdefault("httpx._main", None)
