"""Stalled request bodies: ``receive`` with a deadline, as ASGI middleware.

Each wait for the next piece of the request body may last at most
``request_idle_timeout_seconds``; past it the read raises ``BodyTimeout`` (400
BLOB_UPLOAD_INVALID) inside the handler, so the upload in progress is cleaned up as
any other failed upload (its chunk dropped, the session left at its previous offset; a
monolithic upload's session removed) and the client gets the error if the response
has not started. Once the body is complete, ``receive`` (which then only waits for a
disconnect, e.g. while a response streams) is passed through untimed.
"""

from __future__ import annotations

import anyio

from registry.errors import BodyTimeout


class IdleTimeoutMiddleware:
    def __init__(self, app, settings):
        self.app = app
        self.timeout = settings.request_idle_timeout_seconds

    async def __call__(self, scope, receive, send):
        if not self.timeout or scope["type"] != "http":
            return await self.app(scope, receive, send)
        timeout, body_done = self.timeout, False

        async def timed_receive():
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                with anyio.fail_after(timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(f"no request body bytes for {timeout:g} s; "
                                  "the request was aborted") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
