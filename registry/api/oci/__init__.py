"""OCI Distribution v1.1 routes (end-1 .. end-13), one module per resource.

Repository names contain slashes, so ``{name:path}`` is greedy and every route ends in
a fixed resource segment; upload routes come before blob routes.
"""

from starlette.routing import Route

from registry.api.oci import base, blobs, catalog, manifests, referrers, tags, uploads

routes = [
    Route("/v2/", base.version_check, methods=["GET"]),
    Route("/v2/_catalog", catalog.catalog, methods=["GET"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.get_manifest,
          methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.put_manifest, methods=["PUT"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.delete_manifest,
          methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route("/v2/{name:path}/blobs/uploads", uploads.start_upload, methods=["POST"]),
    Route("/v2/{name:path}/blobs/uploads/{session}", uploads.patch_upload, methods=["PATCH"]),
    Route("/v2/{name:path}/blobs/uploads/{session}", uploads.finish_upload, methods=["PUT"]),
    Route("/v2/{name:path}/blobs/uploads/{session}", uploads.upload_status, methods=["GET"]),
    Route("/v2/{name:path}/blobs/uploads/{session}", uploads.cancel_upload, methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/{digest}", blobs.get_blob, methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/blobs/{digest}", blobs.delete_blob, methods=["DELETE"]),
    Route("/v2/{name:path}/tags/list", tags.list_tags, methods=["GET"]),
    Route("/v2/{name:path}/referrers/{digest}", referrers.referrers, methods=["GET"]),
]
