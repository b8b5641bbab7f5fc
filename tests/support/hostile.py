"""Listeners for outbound-safety tests: what an attacker points assay at, on loopback.

``Listener`` binds a free 127.0.0.1 port and records every connection and every request
it receives (method, path, headers), answering each request with what ``answer`` returns
(``(status, headers, body)``), or closing the connection without a word (``None``). It is
a scripted *hostile* peer, the part of the world assay must not trust: an internal
service a caller wants reached, a registry that redirects elsewhere or names a token
realm on another port. ``hits`` is every connection accepted, answered or not, so a test
can assert that nothing at all reached it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, dict[str, str], bytes] | None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


def _silent(_request: Seen) -> Answer:
    return None


@dataclass
class Listener:
    answer: Callable[[Seen], Answer] = _silent
    requests: list[Seen] = field(default_factory=list)
    hits: int = 0

    def start(self) -> Listener:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                with outer._lock:
                    outer.hits += 1
                super().setup()

            def _any(self) -> None:
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in
                                                      self.headers.items()})
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))
                with outer._lock:
                    outer.requests.append(seen)
                answer = outer.answer(seen)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, body = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll: shutdown() waits for the loop to look (0.5 s by default).
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def authorizations(self) -> list[str]:
        return [r.headers["authorization"] for r in self.requests
                if "authorization" in r.headers]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
