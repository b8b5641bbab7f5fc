"""The REST browse API under ``/api/v1`` (JSON for people, web pages and the ``assay`` CLI).

One module per resource, handlers thin. Errors are RFC 9457 problem details
(``application/problem+json``, see ``registry.api.errors``).

    GET /api/v1/repositories/<name>/tags/<tag>          a tagged manifest and its model card
    GET /api/v1/repositories/<name>/manifests/<digest>  the same, by digest
    GET /api/v1/storage                                 logical vs. stored bytes
"""

from starlette.routing import Mount, Route

from registry.api.rest import manifests, storage

routes = [
    Mount("/api/v1", routes=[
        Route("/storage", storage.summary, methods=["GET"]),
        Route("/repositories/{name:path}/tags/{reference}", manifests.by_tag, methods=["GET"]),
        Route("/repositories/{name:path}/manifests/{reference}", manifests.by_digest,
              methods=["GET"]),
    ]),
]
