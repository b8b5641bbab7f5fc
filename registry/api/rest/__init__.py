"""The REST browse API under ``/api/v1`` (JSON for people, web pages and the ``assay`` CLI).

One module per resource, handlers thin. Errors are RFC 9457 problem details
(``application/problem+json``, see ``registry.api.errors``).

    GET /api/v1/repositories/<name>/tags/<tag>          a tagged manifest and its model card
    GET /api/v1/repositories/<name>/manifests/<digest>  the same, by digest
    GET /api/v1/storage                                 logical vs. stored bytes
    POST /api/v1/repositories/<name>/{tags/<tag>,manifests/<digest>}/verify   re-run
    GET  /api/v1/repositories/<name>/manifests/<digest>/verifications         every run
    POST /api/v1/repositories/<name>/manifests/<digest>/override              let through
    POST /api/v1/repositories/<name>/manifests/<digest>/adopt     results carried with it
    GET|PUT|DELETE /api/v1/policies[/<namespace>]       readiness gate per namespace
    GET|PUT|DELETE /api/v1/profiles[/<namespace>]       verification profile per namespace
    POST /api/v1/repositories/<name>/push-check         would a push fit the quota
    POST /api/v1/hooks/validate                         verify what a webhook names
    GET /api/v1/verifications?reference=<ref>           a local or remote model's runs
    GET /api/v1/workers                                 verification workers, last seen
    GET|PUT|DELETE /api/v1/mirrors[/<namespace>]         pull-through mirror namespaces
    GET|PUT|DELETE /api/v1/classes[/<name>]              hardware classes of workers
    GET /api/v1/repositories[/<name>/tags], /api/v1/models     browse, filter, page
    DELETE /api/v1/repositories/<name>                  the whole repository
    GET /api/v1/openapi.json                            the OpenAPI document of all this
    POST|GET /api/v1/webhooks, GET|DELETE /api/v1/webhooks/<id>    outgoing webhooks
    GET /api/v1/webhooks/<id>/deliveries[/<d>], POST .../<d>/redeliver   delivery log
    /api/v1/{me,users,tokens,keys,namespaces,audit}      access control (rest/accounts.py)

Each handler is wrapped by ``guard`` with what it requires when auth is on
(``registry.api.guard``) and declares its ``@operation`` (``registry.api.rest.common``):
the pydantic models of its body and answer. ``registry.api.rest.openapi`` builds the
document by walking this table; resources share helpers only through ``common`` and
``schemas``, never by importing each other.
"""

from starlette.routing import Mount, Route

from registry.access.permissions import ADMIN, DELETE, PULL, PUSH
from registry.api.guard import ACCOUNT, ANYONE, PUBLIC, SITE_ADMIN, USER, guard
from registry.api.rest import (
    accounts,
    browse,
    classes,
    hooks,
    manifests,
    mirrors,
    openapi,
    policies,
    profiles,
    quotas,
    repositories,
    storage,
    verifications,
    webhooks,
    workers,
)
from registry.api.rest.routing import route

R = "/repositories/{name:path}"
pull, push, repo_admin = guard(("repo", PULL)), guard(("repo", PUSH)), guard(("repo", ADMIN))
repo_delete = guard(("repo", DELETE))
verify = guard(("repo", PUSH), into_mirrors=True)  # no content: allowed in mirror namespaces
site_admin, user, anyone, public = guard(SITE_ADMIN), guard(USER), guard(ANYONE), guard(PUBLIC)
account = guard(ACCOUNT)  # minting tokens and keys: not with a narrowed token
ns_admin = guard(("namespace", ADMIN))

routes = [
    Mount("/api/v1", routes=[
        Route("/storage", site_admin(storage.summary), methods=["GET"]),
        Route("/policies", user(policies.list_policies), methods=["GET"]),
        route("/policies/{namespace:path}", GET=user(policies.get_policy),
              PUT=ns_admin(policies.put_policy), DELETE=ns_admin(policies.delete_policy)),
        Route("/profiles", user(profiles.list_profiles), methods=["GET"]),
        route("/profiles/{namespace:path}", GET=user(profiles.get_profile),
              PUT=ns_admin(profiles.put_profile), DELETE=ns_admin(profiles.delete_profile)),
        # Outgoing webhooks and their delivery log (registry.api.rest.webhooks).
        route("/webhooks", POST=site_admin(webhooks.create),
              GET=site_admin(webhooks.list_webhooks)),
        route("/webhooks/{id:int}", GET=site_admin(webhooks.get_webhook),
              DELETE=site_admin(webhooks.delete_webhook)),
        Route("/webhooks/{id:int}/deliveries", site_admin(webhooks.deliveries),
              methods=["GET"]),
        Route("/webhooks/{id:int}/deliveries/{delivery_id:int}",
              site_admin(webhooks.delivery), methods=["GET"]),
        Route("/webhooks/{id:int}/deliveries/{delivery_id:int}/redeliver",
              site_admin(webhooks.redeliver), methods=["POST"]),
        # Validation on request (registry.api.rest.hooks, .verifications). Webhooks in
        # check their own credentials (ASSAY_HOOK_TOKEN / ASSAY_HOOK_SECRET).
        Route("/hooks/validate", public(hooks.validate), methods=["POST"]),
        Route("/verifications", anyone(verifications.by_reference), methods=["GET"]),
        Route("/workers", site_admin(workers.list_workers), methods=["GET"]),
        # Hardware classes (registry.api.rest.classes): profiles name them.
        Route("/classes", user(classes.list_classes), methods=["GET"]),
        route("/classes/{class_name}", GET=user(classes.get_class),
              PUT=site_admin(classes.put_class), DELETE=site_admin(classes.delete_class)),
        # Mirror namespaces (registry.api.rest.mirrors): egress and credentials.
        Route("/mirrors", site_admin(mirrors.list_mirrors), methods=["GET"]),
        route("/mirrors/{namespace}", GET=site_admin(mirrors.get_mirror),
              PUT=site_admin(mirrors.put_mirror), DELETE=site_admin(mirrors.delete_mirror)),
        # Identities, roles and the audit log (registry.api.rest.accounts).
        Route("/me", user(accounts.me), methods=["GET"]),
        route("/users", GET=site_admin(accounts.list_users), POST=site_admin(accounts.create_user)),
        route("/users/{user}", GET=site_admin(accounts.get_user),
              DELETE=site_admin(accounts.delete_user)),
        Route("/users/{user}/tokens", site_admin(accounts.create_user_token), methods=["POST"]),
        route("/tokens", GET=user(accounts.list_tokens), POST=account(accounts.create_token)),
        Route("/tokens/{id:int}", account(accounts.revoke_token), methods=["DELETE"]),
        route("/keys", GET=user(accounts.list_keys), POST=account(accounts.add_key)),
        Route("/keys/{id:int}", account(accounts.remove_key), methods=["DELETE"]),
        route("/namespaces/{namespace}", GET=ns_admin(accounts.get_namespace),
              PUT=ns_admin(accounts.put_namespace)),
        route("/namespaces/{namespace}/members/{user}", PUT=ns_admin(accounts.put_member),
              DELETE=ns_admin(accounts.delete_member)),
        Route("/audit", site_admin(accounts.audit), methods=["GET"]),
        # The longer paths first: {name:path} would otherwise swallow "/tags/x".
        Route(R + "/tags/{reference}/verify", verify(manifests.verify_tag), methods=["POST"]),
        Route(R + "/manifests/{reference}/verify", verify(manifests.verify_digest),
              methods=["POST"]),
        Route(R + "/manifests/{reference}/verifications", pull(manifests.verifications),
              methods=["GET"]),
        Route(R + "/manifests/{reference}/override", repo_admin(manifests.override),
              methods=["POST"]),
        Route(R + "/manifests/{reference}/adopt", repo_admin(manifests.adopt),
              methods=["POST"]),
        Route(R + "/push-check", push(quotas.check_push), methods=["POST"]),
        Route(R + "/tags/{reference}", pull(manifests.by_tag), methods=["GET"]),
        Route(R + "/manifests/{reference}", pull(manifests.by_digest), methods=["GET"]),
        # Browsing (registry.api.rest.browse). After the routes above, so that
        # ".../tags/<tag>" keeps meaning a tag (repository "x/tags" has no tag listing).
        Route("/openapi.json", public(openapi.document), methods=["GET"]),
        Route("/models", anyone(browse.list_models), methods=["GET"]),
        Route("/repositories", anyone(browse.list_repositories), methods=["GET"]),
        Route(R + "/tags", pull(browse.list_tags), methods=["GET"]),
        # Its {name:repository} never takes the paths above for a name.
        Route("/repositories/{name:repository}", repo_delete(repositories.delete_repository),
              methods=["DELETE"]),
    ]),
]
