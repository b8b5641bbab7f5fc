"""Prometheus metrics at ``GET /metrics`` (``prometheus_client``, text format).

Two sources, each app with its own ``CollectorRegistry`` (never the process-global one,
so several apps in one process, e.g. the tests, do not mix their figures):

- ``MetricsMiddleware`` counts this replica's requests, labelled by the matched route's
  path *template* (``/v2/{name:path}/blobs/{digest}``; never the raw path, whose values
  are unbounded; ``unmatched`` when no route matches)::

      assay_http_requests_total{method,route,status}
      assay_http_request_duration_seconds{method,route}     histogram
      assay_http_request_bytes_total / assay_http_response_bytes_total   body bytes

  These are per process: sum them over replicas in PromQL.
- ``DatabaseCollector`` reads the shared database at scrape time
  (``registry.services.figures``: a few GROUP BY queries), so every replica reports
  the same, right, figures for the whole deployment, whichever process did the work
  (workers are separate processes)::

      assay_jobs{kind,status}                      jobs in the queue, by kind and status
      assay_model_manifests{status}                model manifests by verification status
      assay_verifications_total{verdict,backend}   verification runs recorded
      assay_verification_duration_seconds{verdict,backend}   summary: _sum and _count
      assay_verification_regressions_total{verdict}   runs that found regressions against
                                                   the previous version of a tag
      assay_model_manifests_regressed              model manifests whose latest run did
      assay_blobs_quarantined                      blobs `assay scrub` took out of service
      assay_metrics_database_up                    0 when the queries above failed

  The verification figures are counts of rows: deleting a model deletes its
  verifications, which Prometheus sees as a counter reset.

``/metrics`` is public (no credentials, like Prometheus scrapers expect): do not expose
it to the internet; keep it on an internal network or restrict it at the proxy.
"""

from __future__ import annotations

import logging
import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount

from registry.api.guard import PUBLIC, guard
from registry.services.figures import read_figures

log = logging.getLogger("assay.metrics")
UNMATCHED = "unmatched"


class Metrics:
    """One app's registry and its request metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("assay_http_requests", "HTTP requests served",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram("assay_http_request_duration_seconds",
                                  "Time from request start to the last response byte",
                                  ["method", "route"], registry=self.registry)
        self.bytes_in = Counter("assay_http_request_bytes", "Request body bytes received",
                                ["method", "route"], registry=self.registry)
        self.bytes_out = Counter("assay_http_response_bytes", "Response body bytes sent",
                                 ["method", "route"], registry=self.registry)


def route_template(app, scope) -> str:
    """The full path template of the route ``scope`` goes to (recursing into Mounts):
    the first full match, else the first partial one (a wrong method: 405)."""
    partial = None

    def find(routes, scope, prefix):
        nonlocal partial
        for r in routes:
            match, child = r.matches(scope)
            if match == Match.NONE:
                continue
            if isinstance(r, Mount):
                found = find(r.routes, {**scope, **child}, prefix + r.path)
                if found:
                    return found
            elif match == Match.FULL:
                return prefix + r.path
            elif partial is None:
                partial = prefix + r.path
        return None

    routes = getattr(app, "routes", None) or []
    path_scope = {"type": "http", "method": scope.get("method", "GET"),
                  "path": scope.get("path", ""), "root_path": ""}
    return find(routes, path_scope, "") or partial or UNMATCHED


# Request methods get their own label value; anything else is "other", so a client
# sending made-up methods cannot create time series without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_templates(app) -> dict[int, str]:
    """``{id(route): full path template}`` for every route of ``app``, Mounts included."""
    found: dict[int, str] = {}

    def walk(routes, prefix: str) -> None:
        for r in routes:
            if isinstance(r, Mount):
                walk(r.routes, prefix + r.path)
            else:
                found[id(r)] = prefix + r.path

    walk(getattr(app, "routes", None) or [], "")
    return found


class MetricsMiddleware:
    """Counts requests, durations and body bytes by (method, route template, status).

    Runs on every request, blob bytes included, so it keeps its per-request work small:
    the route is the one Starlette's router put in ``scope["route"]`` (no second match),
    and each label set's metric children are looked up once and then cached.
    """

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._templates: dict[int, str] | None = None
        self._children: dict[tuple[str, str, int], tuple] = {}

    def _template(self, scope) -> str:
        route = scope.get("route")
        if route is None:
            return route_template(scope.get("app"), scope)  # unmatched (or a raw ASGI app)
        if self._templates is None:
            self._templates = route_templates(scope.get("app"))
        template = self._templates.get(id(route))
        return template if template is not None else route_template(scope.get("app"), scope)

    def _series(self, method: str, route: str, status: int) -> tuple:
        key = (method, route, status)
        series = self._children.get(key)
        if series is None:
            m = self.metrics
            series = (m.requests.labels(method, route, str(status)),
                      m.duration.labels(method, route),
                      m.bytes_in.labels(method, route), m.bytes_out.labels(method, route))
            self._children[key] = series
        return series

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status, bytes_in, bytes_out = 500, 0, 0

        async def counting_receive():
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message):
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                bytes_out += os.path.getsize(message["path"])
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            method = scope.get("method", "")
            requests, duration, b_in, b_out = self._series(
                method if method in METHODS else "other", self._template(scope), status)
            requests.inc()
            duration.observe(time.perf_counter() - start)
            if bytes_in:
                b_in.inc(bytes_in)
            if bytes_out:
                b_out.inc(bytes_out)


class DatabaseCollector:
    """Scrape-time figures from the shared database; ``service_of()`` gives the app's
    ``RegistryService`` (None before the lifespan has built it)."""

    def __init__(self, service_of):
        self.service_of = service_of

    def describe(self):
        return []  # registering must not query the database

    def collect(self):
        up = GaugeMetricFamily("assay_metrics_database_up",
                               "1 when the database figures below could be read")
        service = self.service_of()
        if service is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            families = self._query(service)
        except Exception:  # a scrape must answer even with the database down
            log.warning("metrics: database figures unavailable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    @staticmethod
    def _query(service) -> list:
        figures = read_figures(service.db, service.queue)
        queue = GaugeMetricFamily("assay_jobs", "Jobs in the queue by kind and status",
                                  labels=["kind", "status"])
        for (kind, status), n in figures.jobs.items():
            queue.add_metric([kind, status], n)
        models = GaugeMetricFamily("assay_model_manifests",
                                   "Model manifests by verification status",
                                   labels=["status"])
        for status, n in figures.manifest_statuses.items():
            models.add_metric([status], n)
        runs = CounterMetricFamily("assay_verifications", "Verification runs recorded",
                                   labels=["verdict", "backend"])
        durations = SummaryMetricFamily("assay_verification_duration_seconds",
                                        "Verification run durations (finished - started)",
                                        labels=["verdict", "backend"])
        for v in figures.verifications:
            runs.add_metric([v.verdict, v.backend], v.runs)
            durations.add_metric([v.verdict, v.backend], count_value=v.runs,
                                 sum_value=v.seconds)
        held = GaugeMetricFamily("assay_blobs_quarantined",
                                 "Blobs `assay scrub` found damaged and took out of service "
                                 "until pushed again")
        held.add_metric([], figures.quarantined_blobs)
        return [queue, models, runs, durations, *_regression_families(figures), held]


def _regression_families(figures) -> list:
    # Counts by outcome only: which model regressed, and on what, is in REST and webhooks
    # (a series per model would grow without end).
    found = CounterMetricFamily("assay_verification_regressions",
                                "Verification runs that found regressions against the "
                                "previous version of a tag (failed: the profile fails them)",
                                labels=["verdict"])
    for verdict, n in figures.regressions.items():
        found.add_metric([verdict], n)
    regressed = GaugeMetricFamily("assay_model_manifests_regressed",
                                  "Model manifests whose latest verification found "
                                  "regressions")
    regressed.add_metric([], figures.regressed_models)
    return [found, regressed]


def watch_database(metrics: Metrics, app) -> None:
    """Register the database figures of ``app``'s service (once its lifespan built it)."""
    metrics.registry.register(DatabaseCollector(
        lambda: getattr(app.state, "registry", None)))


@guard(PUBLIC)
async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text exposition of this app's registry."""
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
