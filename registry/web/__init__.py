"""The web interface: server-rendered pages for browsers, served by the registry itself.

Pages live beside the APIs on one app. Everything of the interface's own is under ``/-/``
(no repository name can start with ``-``), and a repository's pages are its name, as on
the Hugging Face Hub or GitLab:

    GET  /                                        repositories, with search and sorting
    GET  /-/models                                models, with the browse API's filters
    GET  /-/compare?m=REPO:TAG&m=...              two to four models side by side
    GET  /-/sign-in, POST /-/sign-in              a session cookie from a user's password
    POST /-/sign-out                              forget it
    GET  /-/static/<hash>/<file>                  assets, immutable under their hash
    GET  /-/admin[/...]                           administration (registry/web/admin.py)
    GET  /<repo>                                  a repository's tags
    GET  /<repo>/-/tags/<tag>                     a model page by tag
    GET  /<repo>/-/manifests/<digest>             the same, by digest
    GET  /<repo>/-/manifests/<digest>/status      its status, polled while it verifies

Each page is wrapped by ``page(need)`` (``registry.web.session``), which checks exactly
what the REST route that reads or changes the same thing checks (``registry.api.guard``):
a browser sees and does what its user could over REST, never more. Forms post with a
CSRF token; changes go through the same services as the REST API, so they are audited
and checked the same way. Errors are HTML pages (``registry.api.errors``).
"""
