"""OCI Distribution v1.1 routes (end-1 .. end-13), one module per resource.

Repository names contain slashes, so ``{name:path}`` is greedy and every route ends in
a fixed resource segment; upload routes come before blob routes. Each handler is wrapped
by ``guard`` with what it requires when auth is on (``registry.api.guard``).
"""

from starlette.routing import Route

from registry.access.permissions import DELETE, PULL, PUSH
from registry.api.guard import ANYONE, guard
from registry.api.oci import base, blobs, catalog, manifests, referrers, tags, uploads

pull, push, delete = guard(("repo", PULL)), guard(("repo", PUSH)), guard(("repo", DELETE))
U = "/v2/{name:path}/blobs/uploads"

routes = [
    Route("/v2/", guard(ANYONE)(base.version_check), methods=["GET"]),
    Route("/v2/_catalog", guard(ANYONE)(catalog.catalog), methods=["GET"]),
    Route("/v2/{name:path}/manifests/{reference}", pull(manifests.get_manifest),
          methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/manifests/{reference}", push(manifests.put_manifest),
          methods=["PUT"]),
    Route("/v2/{name:path}/manifests/{reference}", delete(manifests.delete_manifest),
          methods=["DELETE"]),
    Route(U + "/", push(uploads.start_upload), methods=["POST"]),
    Route(U, push(uploads.start_upload), methods=["POST"]),
    Route(U + "/{session}", push(uploads.patch_upload), methods=["PATCH"]),
    Route(U + "/{session}", push(uploads.finish_upload), methods=["PUT"]),
    Route(U + "/{session}", push(uploads.upload_status), methods=["GET"]),
    Route(U + "/{session}", push(uploads.cancel_upload), methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/{digest}", pull(blobs.get_blob), methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/blobs/{digest}", delete(blobs.delete_blob), methods=["DELETE"]),
    Route("/v2/{name:path}/tags/list", pull(tags.list_tags), methods=["GET"]),
    Route("/v2/{name:path}/referrers/{digest}", pull(referrers.referrers), methods=["GET"]),
]
