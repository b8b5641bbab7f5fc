"""An httpx transport on the standard library's ``http.client``, built for bulk bytes.

httpx's own transport (httpcore + h11) hands a body over in 64 KiB ``bytes`` objects, each
through several layers of Python; moving a 253 MB GGUF that way costs ~3x the CPU of the
copy itself, and on a 2-core machine that CPU is taken from the registry serving it. Here:

- a response body can be read with ``readinto`` into a caller's buffer (1 MiB at a time,
  no allocation per chunk): ``body_reader(response)`` returns that method, or None when
  the response came from another transport (tests wrap or replace transports);
- a request whose stream is a ``FileRegion`` goes out with ``socket.sendfile`` (zero copy
  on plain HTTP; TLS sockets fall back to ``send`` inside the standard library);
- connections are kept alive in a small per-origin pool;
- with an ``OutboundPolicy`` every connection, redirect hops and token realms included,
  goes only to addresses the policy allows, checked on the resolved addresses.

Errors are raised as httpx's exceptions (``ConnectError``, ``ReadTimeout``,
``RemoteProtocolError`` ...), with the original ``OSError`` chained, so the client's retry
policy and error messages treat both transports alike. A request that fails on a pooled
connection before any response byte arrived is retried once on a fresh connection when
its body can be sent again (none, bytes, or a ``FileRegion``): the server may have closed
an idle keep-alive connection at the same moment.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import httpx

from client.errors import InputError
from client.outbound import OutboundPolicy

BLOCK = 1024 * 1024
POOL_PER_ORIGIN = 16


class FileRegion(httpx.SyncByteStream):
    """``length`` bytes of the file at ``path`` from ``offset``; sendfile-able, re-sendable.

    ``on_bytes`` is told how many bytes went out (for progress). Raises ``OSError`` when
    the file is shorter than promised or unreadable: ``InputError``, not an ``OSError``, so
    it is never mistaken for a network failure and retried.
    """

    def __init__(self, path: os.PathLike | str, offset: int, length: int,
                 on_bytes: Callable[[int], None] | None = None):
        self.path, self.offset, self.length, self.on_bytes = path, offset, length, on_bytes

    def _open(self):
        try:
            return open(self.path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def _short(self) -> InputError:
        return InputError(f"{self.path} changed while it was being pushed")

    def __iter__(self) -> Iterator[bytes]:
        with self._open() as f:
            f.seek(self.offset)
            remaining = self.length
            while remaining:
                block = f.read(min(BLOCK, remaining))
                if not block:
                    raise self._short()
                remaining -= len(block)
                if self.on_bytes:
                    self.on_bytes(len(block))
                yield block

    def sendfile(self, sock: socket.socket) -> None:
        with self._open() as f:
            sent, offset, end = 0, self.offset, self.offset + self.length
            # Progress in 4 MiB steps: one sendfile call for the whole region would leave
            # the progress bar still until the end.
            while offset < end:
                n = sock.sendfile(f, offset, min(4 * BLOCK, end - offset))
                if n == 0:
                    raise self._short()
                offset += n
                sent += n
                if self.on_bytes:
                    self.on_bytes(n)


class _Body(httpx.SyncByteStream):
    def __init__(self, transport: StdlibTransport, origin: tuple, conn, resp):
        self.transport, self.origin, self.conn, self.resp = transport, origin, conn, resp

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` with the next body bytes; 0 at the end of the body. A body that
        ends before its Content-Length raises ``RemoteProtocolError``."""
        try:
            n = self.resp.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            raise _translate(exc, connected=True) from exc
        if n == 0 and len(buffer):
            self._check_complete()
        return n

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self.resp.read(BLOCK):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise _translate(exc, connected=True) from exc
        self._check_complete()

    def _check_complete(self) -> None:
        # http.client returns b"" at a premature end of a Content-Length body, silently.
        missing = self.resp.length
        if missing:
            raise httpx.RemoteProtocolError(
                f"the connection closed with {missing} bytes of the body still to come")

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        if self.resp.isclosed() and not self.resp.will_close:
            self.transport._release(self.origin, conn)
        else:  # body not read to the end (or the server said close): not reusable
            self.resp.close()
            conn.close()


class StdlibTransport(httpx.BaseTransport):
    """HTTP/1.1 over ``http.client`` with keep-alive; see the module docstring."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None,
                 policy: OutboundPolicy | None = None):
        self._ssl = ssl_context
        self.policy = policy
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            cafile = os.environ.get("SSL_CERT_FILE")
            if cafile is None:
                import certifi  # httpx's own CA bundle, so both transports trust the same

                cafile = certifi.where()
            self._ssl = ssl.create_default_context(cafile=cafile,
                                                   capath=os.environ.get("SSL_CERT_DIR"))
        return self._ssl

    def _acquire(self, origin: tuple, timeout: float | None) -> tuple[object, bool]:
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        scheme, host, port = origin
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=self._context(), blocksize=BLOCK)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout, blocksize=BLOCK)
        if self.policy is not None:
            # http.client connects through this attribute (TLS wraps the socket after,
            # still verifying the host name): the policy resolves, judges and connects.
            conn._create_connection = self.policy.create_connection
        return conn, False

    def _release(self, origin: tuple, conn) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < POOL_PER_ORIGIN:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        connect_timeout, read_timeout = timeouts.get("connect"), timeouts.get("read")
        stream = request.stream
        replayable = isinstance(stream, FileRegion | httpx.ByteStream)
        for attempt in (1, 2):
            conn, reused = self._acquire(origin, connect_timeout)
            try:
                if conn.sock is None:
                    conn.connect()
                conn.sock.settimeout(read_timeout)
                resp = self._exchange(conn, request, stream)
            except (OSError, http.client.HTTPException) as exc:
                connected = conn.sock is not None or reused
                conn.close()
                if reused and attempt == 1 and replayable and _before_response(exc):
                    continue
                raise _translate(exc, connected=connected) from exc
            except BaseException:  # e.g. the file being sent changed: drop the connection
                conn.close()
                raise
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.getheaders()]
            body = _Body(self, origin, conn, resp)
            if request.method == "HEAD" or resp.status in (204, 304) or resp.isclosed():
                body.close()
            return httpx.Response(resp.status, headers=headers, stream=body,
                                  extensions={"http_version": b"HTTP/1.1",
                                              "reason_phrase": resp.reason.encode("latin-1"),
                                              "assay_readinto": body.readinto})
        raise AssertionError("unreachable")

    @staticmethod
    def _exchange(conn, request: httpx.Request, stream) -> http.client.HTTPResponse:
        url = request.url
        target = url.raw_path.decode("ascii")
        conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        chunked = False
        for key, value in request.headers.raw:
            if key.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            conn.putheader(key.decode("latin-1"), value.decode("latin-1"))
        conn.endheaders()
        if isinstance(stream, FileRegion) and not chunked:
            stream.sendfile(conn.sock)
        else:
            for chunk in stream:
                if chunked:
                    conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunk else b"")
                elif chunk:
                    conn.send(chunk)
            if chunked:
                conn.send(b"0\r\n\r\n")
        return conn.getresponse()


def body_reader(response: httpx.Response) -> Callable[[memoryview], int] | None:
    """``readinto`` for the body of a response from ``StdlibTransport``, else None."""
    return response.extensions.get("assay_readinto")


def body_blocks(response: httpx.Response, size: int = 1 << 20
                ) -> Iterator[memoryview | bytes]:
    """The raw body in blocks: read into one reused buffer of ``size`` bytes when the
    transport allows it (each block is only valid until the next one), else httpx's
    chunks."""
    read = body_reader(response)
    if read is None:
        yield from response.iter_bytes(size)
        return
    view = memoryview(bytearray(size))
    while n := read(view):
        yield view[:n]


def _before_response(exc: BaseException) -> bool:
    return isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError |
                      ConnectionResetError | ConnectionAbortedError)


def _translate(exc: BaseException, *, connected: bool) -> httpx.TransportError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | socket.timeout):
        return httpx.ReadTimeout(text) if connected else httpx.ConnectTimeout(text)
    if not connected or isinstance(exc, socket.gaierror | ConnectionRefusedError):
        return httpx.ConnectError(text)
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(text)
    return httpx.ReadError(text)
