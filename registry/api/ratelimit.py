"""Per-client request rate limit: a token bucket per client IP, as ASGI middleware.

``RateLimiter`` is pure (an injectable clock, no I/O): each key has a bucket of
``burst`` tokens refilled at ``rate`` per second; a request takes one token, and
``check`` answers None (go ahead) or the seconds until a token is available.
``RateLimitMiddleware`` answers over-limit requests itself with 429 TOOMANYREQUESTS
and ``Retry-After``, rendered like every other error (OCI JSON on ``/v2/``, problem
JSON on ``/api/``), before any handler or body read.

Buckets live in this process: with several replicas each enforces its own limit.
Memory is bounded: past ``max_keys`` the least recently seen buckets are dropped
(a dropped bucket starts full again).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request

from registry.api.errors import registry_error
from registry.errors import TooManyRequests


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def check(self, key: str) -> float | None:
        """Take a token for ``key``: None if allowed, else seconds to wait for one."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        wait = None
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def client_ip(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimitMiddleware:
    """429 for a client IP over ``rate_limit_per_second``; a no-op when it is 0."""

    def __init__(self, app, settings):
        self.app = app
        rate = settings.rate_limit_per_second
        self.limiter = RateLimiter(rate, settings.rate_limit_burst) if rate > 0 else None

    async def __call__(self, scope, receive, send):
        if self.limiter is None or scope["type"] != "http":
            return await self.app(scope, receive, send)
        wait = self.limiter.check(client_ip(scope))
        if wait is None:
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        exc = TooManyRequests(f"request rate limit exceeded; retry in {wait:.1f} s",
                              retry_after=wait)
        response = await registry_error(request, exc)
        await response(scope, receive, send)
