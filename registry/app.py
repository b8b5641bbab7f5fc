"""``create_app(settings)``: the registry's ASGI application.

Everything stateful (database engine, blob store, services) is built in the lifespan
and hung on ``app.state``; there is no module-level state.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from registry.api import errors
from registry.api.health import healthz, readyz
from registry.api.hf.routes import routes as hub_routes
from registry.api.metrics import Metrics, MetricsMiddleware, metrics_endpoint, watch_database
from registry.api.oci import routes as oci_routes
from registry.api.oci.base import ApiVersionMiddleware
from registry.api.ratelimit import RateLimitMiddleware
from registry.api.requestid import RequestIdMiddleware
from registry.api.rest import routes as rest_routes
from registry.api.timeouts import IdleTimeoutMiddleware
from registry.api.token_endpoint import token as token_endpoint
from registry.db import Database, migrate
from registry.maintenance.gc import upload_sweeper
from registry.services import RegistryService
from registry.settings import Settings
from registry.storage import open_store
from registry.web.routes import repository_routes
from registry.web.routes import routes as web_routes

log = logging.getLogger("assay")


def build_service(settings: Settings, *, run_migrations: bool = True) -> RegistryService:
    """Database + blob store + services for ``settings`` (used by the app and the CLI)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if run_migrations:
        migrate(settings.sqlalchemy_url)
    return RegistryService(Database(settings.sqlalchemy_url), open_store(settings), settings)


def _first_admin(settings: Settings, database: str) -> str:
    """How to add the first admin to this server's database (from any directory)."""
    command = "assay user add NAME --admin --password-stdin"
    if settings.database_url:
        return (f"add one with `{command}` and ASSAY_DATABASE_URL set to this server's "
                f"database ({database})")
    return (f"add one with `{command} --data-dir {settings.data_dir.resolve()}` (the "
            f"database {database})")


def create_app(settings: Settings | None = None, *, run_migrations: bool = True,
               workers: int = 0) -> Starlette:
    """The registry app. ``workers``: verification worker processes to run for the app's
    lifetime (``assay serve``), started once the schema is migrated and stopped, handing
    their jobs back, when the app shuts down."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.registry = build_service(settings, run_migrations=run_migrations)
        database = app.state.registry.db.engine.url.render_as_string(hide_password=True)
        log.info("assay registry ready: database %s, storage %s, auth %s", database,
                 settings.storage, "on" if settings.auth else "off")
        if settings.auth and not await anyio.to_thread.run_sync(
                app.state.registry.identities.count_users):
            log.warning("auth is on but there are no users: %s",
                        _first_admin(settings, database))
        pool = None
        if workers:
            from worker.pool import Pool

            pool = Pool(settings, workers)
            pool.start()
            log.info("%d verification worker(s): pids %s", workers, pool.pids)
        try:
            # Expired upload sessions and their data go every upload_sweep_seconds.
            async with upload_sweeper(app.state.registry, settings.upload_sweep_seconds):
                yield
        finally:
            # Here, not after uvicorn.run returns: uvicorn re-raises the signal that
            # stopped it once it has shut down, and code after run() never executes.
            if pool is not None:
                await anyio.to_thread.run_sync(pool.stop)
            app.state.registry.db.dispose()

    token_route = Route("/auth/token", token_endpoint, methods=["GET"])
    # Liveness and readiness probes (registry/api/health.py).
    health_routes = [Route("/healthz", healthz, methods=["GET"]),
                     Route("/readyz", readyz, methods=["GET"])]
    # Prometheus text format; public: keep it off the internet (registry/api/metrics.py).
    metrics_route = Route("/metrics", metrics_endpoint, methods=["GET"])
    metrics = Metrics()
    # The Hub's routes come after the others: their ``/<repo>/resolve/...`` matches any
    # path; a repository's web pages (``/<repo>``) come last, matching what is left.
    app = Starlette(routes=[*oci_routes, *rest_routes, token_route, *health_routes,
                            metrics_route, *web_routes, *hub_routes, *repository_routes],
                    lifespan=lifespan, exception_handlers=errors.HANDLERS,
                    middleware=[Middleware(MetricsMiddleware, metrics=metrics),
                                Middleware(ApiVersionMiddleware),
                                Middleware(RateLimitMiddleware, settings=settings),
                                Middleware(IdleTimeoutMiddleware, settings=settings),
                                Middleware(RequestIdMiddleware, settings=settings)])
    app.state.settings = settings
    app.state.metrics = metrics
    watch_database(metrics, app)
    return app
