"""An access-controlled registry app driven in process (``tests/api``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.testclient import TestClient

from registry.app import create_app
from registry.settings import Settings


@contextmanager
def auth_client(settings: Settings, *, users: dict[str, str | None] | None = None,
                roles: dict[str, dict[str, str]] | None = None,
                base_url: str = "http://registry.test") -> Iterator[TestClient]:
    """A TestClient of ``settings`` with auth on and no credential cache (a change of
    roles shows at once). ``users``: name -> password (None: a robot, which signs in with
    its tokens); ``roles``: namespace -> {user: role}."""
    settings = settings.model_copy(update={"auth": True, "auth_cache_seconds": 0})
    app = create_app(settings, run_migrations=False)
    with TestClient(app, base_url=base_url) as client:
        access = app.state.registry.identities
        for name, password in (users or {}).items():
            access.add_user(name, password, robot=password is None)
        for namespace, members in (roles or {}).items():
            for name, role in members.items():
                access.grant(namespace, name, role)
        yield client
