"""The Hugging Face Hub's HTTP API, on the same store as ``/v2/`` (``HF_ENDPOINT=<assay>``).

A Hub repository is an assay repository; a revision is a tag (a branch; ``main`` falls
back to ``latest``) or a 40-hex commit id that stands for one manifest digest
(``registry.services.hub``). Downloads by branch pass the readiness gate exactly as OCI
pulls by tag do; a commit id, like a digest, is never gated. Uploads take the classic
(git-LFS) path and record a ModelPack manifest tagged with the branch, verified like any
push (``registry.services.hub_commits``). Xet is not spoken.

    GET  /api/models/<repo>[/revision/<rev>]         model info: sha, siblings, card data
    GET  /api/models/<repo>/tree/<rev>[/<path>]      files and folders (Link pagination)
    POST /api/models/<repo>/paths-info/<rev>         the entries of given paths
    GET  /api/models/<repo>/refs                     branches and tags
    GET  /api/models/<repo>/commits/<rev>            a branch's history (newest first)
    HEAD|GET /<repo>/resolve/<rev>/<path>            a file (Range; X-Repo-Commit, ETag)
    GET  /api/whoami-v2                              the caller
    POST /api/validate-yaml                          a README.md's metadata, before a commit
    GET  /api/models/<repo>/xet-{write,read}-token/<rev>   404: Xet is not supported
    POST /api/repos/create, DELETE /api/repos/delete create or delete a repository
    POST /api/models/<repo>/preupload/<rev>          which files go through LFS
    POST /<repo>.git/info/lfs/objects/batch          git-LFS batch (basic transfer)
    PUT  /<repo>.git/info/lfs/objects/<oid>          an LFS object's bytes
    POST /<repo>.git/info/lfs/verify                 the object is stored
    POST /api/models/<repo>/commit/<rev>             NDJSON commit -> ModelPack manifest
    POST|DELETE /api/models/<repo>/branch/<branch>   create or delete a branch (a tag)
    POST /api/models/<repo>/tag/<rev>, DELETE /api/models/<repo>/tag/<tag>

Each handler is wrapped by ``hub(need)``: ``guard(need)`` (the same permissions as on
``/v2/``) plus the mark that makes errors come out the Hub's way
(``registry.api.hf.errors``). Routes are matched in order: the greedy ``<repo>`` of the
bare model-info route comes last. The table is in ``routes``
(this package imports nothing, so ``registry.api.errors`` can import ``errors``).
"""

