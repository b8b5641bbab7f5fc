"""The REST browse API under ``/api/v1`` (JSON for people, web pages and the ``assay`` CLI).

One module per resource, handlers thin. Errors are RFC 9457 problem details
(``application/problem+json``, see ``registry.api.errors``).

    GET /api/v1/repositories/<name>/tags/<tag>          a tagged manifest and its model card
    GET /api/v1/repositories/<name>/manifests/<digest>  the same, by digest
    GET /api/v1/storage                                 logical vs. stored bytes
    POST /api/v1/repositories/<name>/{tags/<tag>,manifests/<digest>}/verify   re-run
    GET  /api/v1/repositories/<name>/manifests/<digest>/verifications         every run
    POST /api/v1/repositories/<name>/manifests/<digest>/override              let through
    GET|PUT|DELETE /api/v1/policies[/<namespace>]       readiness gate per namespace
    POST /api/v1/hooks/validate                         verify what a webhook names
    GET /api/v1/verifications?reference=<ref>           a local or remote model's runs
    GET /api/v1/repositories[/<name>/tags], /api/v1/models     browse, filter, page
    GET /api/v1/openapi.json                            the OpenAPI document of all this
    POST|GET /api/v1/webhooks, GET|DELETE /api/v1/webhooks/<id>    outgoing webhooks
    GET /api/v1/webhooks/<id>/deliveries[/<d>], POST .../<d>/redeliver   delivery log
"""

from starlette.routing import Mount, Route

from registry.api.rest import (
    browse,
    hooks,
    manifests,
    openapi,
    policies,
    storage,
    verifications,
    webhooks,
)
from registry.api.rest.routing import route

R = "/repositories/{name:path}"

routes = [
    Mount("/api/v1", routes=[
        Route("/storage", storage.summary, methods=["GET"]),
        Route("/policies", policies.list_policies, methods=["GET"]),
        route("/policies/{namespace:path}", GET=policies.get_policy,
              PUT=policies.put_policy, DELETE=policies.delete_policy),
        # Outgoing webhooks and their delivery log (registry.api.rest.webhooks).
        route("/webhooks", POST=webhooks.create, GET=webhooks.list_webhooks),
        route("/webhooks/{id:int}", GET=webhooks.get_webhook, DELETE=webhooks.delete_webhook),
        Route("/webhooks/{id:int}/deliveries", webhooks.deliveries, methods=["GET"]),
        Route("/webhooks/{id:int}/deliveries/{delivery_id:int}", webhooks.delivery,
              methods=["GET"]),
        Route("/webhooks/{id:int}/deliveries/{delivery_id:int}/redeliver",
              webhooks.redeliver, methods=["POST"]),
        # Validation on request (registry.api.rest.hooks, .verifications).
        Route("/hooks/validate", hooks.validate, methods=["POST"]),
        Route("/verifications", verifications.by_reference, methods=["GET"]),
        # The longer paths first: {name:path} would otherwise swallow "/tags/x".
        Route(R + "/tags/{reference}/verify", manifests.verify_tag, methods=["POST"]),
        Route(R + "/manifests/{reference}/verify", manifests.verify_digest, methods=["POST"]),
        Route(R + "/manifests/{reference}/verifications", manifests.verifications,
              methods=["GET"]),
        Route(R + "/manifests/{reference}/override", manifests.override, methods=["POST"]),
        Route("/repositories/{name:path}/tags/{reference}", manifests.by_tag, methods=["GET"]),
        Route("/repositories/{name:path}/manifests/{reference}", manifests.by_digest,
              methods=["GET"]),
        # Browsing (registry.api.rest.browse). After the routes above, so that
        # ".../tags/<tag>" keeps meaning a tag (repository "x/tags" has no tag listing).
        Route("/openapi.json", openapi.document, methods=["GET"]),
        Route("/models", browse.list_models, methods=["GET"]),
        Route("/repositories", browse.list_repositories, methods=["GET"]),
        Route(R + "/tags", browse.list_tags, methods=["GET"]),
    ]),
]
