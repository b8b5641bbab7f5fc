"""A real HTTP webhook receiver on 127.0.0.1 for the webhook tests.

``Receiver(port=None)`` binds a free loopback port (or ``port``), records every POST
(path, headers, the raw body) and answers ``status`` (settable while it runs). ``stop()``
closes the socket (a later POST is refused: "down"); ``start()`` binds the same port again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event(self) -> dict:
        (event,) = self.json["events"]
        return event

    def signature_ok(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-assay-signature", ""), expected)


class Receiver:
    def __init__(self, port: int = 0, status: int = 204):
        self.status = status
        self.received: list[Received] = []
        self.port = port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.status
                self.send_response(status)
                reply = b"" if status == 204 else f"answer {status}".encode()
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll: shutdown() waits for the loop to look (0.5 s by default).
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def events(self) -> list[dict]:
        with self._lock:
            return [r.event for r in self.received]

    def wait_for(self, predicate, timeout: float, what: str) -> list[Received]:
        """Poll until ``predicate(received)`` is truthy; return the requests so far."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = list(self.received)
            if predicate(got):
                return got
            if time.monotonic() >= deadline:
                summary = [(r.event.get("action"), r.event.get("target", {}).get("repository"))
                           for r in got]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"received {summary}")
            time.sleep(0.2)
