"""The client's http.client transport against a real (tiny) HTTP/1.1 server on loopback."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import httpx
import pytest

from client.errors import InputError
from client.transport import FileRegion, StdlibTransport, body_reader
from tests.support.processes import free_port

BODY = bytes(range(256)) * 8192  # 2 MiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self):
        if self.path == "/short":  # promises more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:1000])
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
        if self.path == "/then-close":
            self.close_connection = True

    def do_PUT(self):
        length = int(self.headers["Content-Length"])
        data = self.rfile.read(length)
        self.server.received.append(data)
        digest = hashlib.sha256(data).hexdigest().encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", free_port()), Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[bytes] = []


@pytest.fixture
def server():
    srv = Server()
    # A short poll: shutdown() waits for the loop to look (0.5 s by default).
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client():
    with httpx.Client(transport=StdlibTransport(), timeout=10) as c:
        yield c


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_readinto_body_and_keep_alive(server, client):
    for _ in range(3):
        with client.stream("GET", url(server, "/blob")) as resp:
            read = body_reader(resp)
            assert read is not None
            buf = memoryview(bytearray(300_000))
            got = bytearray()
            while n := read(buf):
                got += buf[:n]
        assert bytes(got) == BODY
    assert client.get(url(server, "/blob")).content == BODY  # the iterating path too
    assert server.connections == 1  # one connection, reused four times


def test_a_connection_the_server_closed_is_replaced(server, client):
    assert client.get(url(server, "/then-close")).content == BODY
    assert client.get(url(server, "/blob")).content == BODY
    assert server.connections == 2


def test_file_region_is_sent_with_sendfile(server, client, tmp_path):
    path = tmp_path / "weights"
    path.write_bytes(BODY)
    progress = []
    region = FileRegion(path, 1000, len(BODY) - 2000, progress.append)
    request = httpx.Request("PUT", url(server, "/up"), stream=region,
                            headers={"Content-Length": str(region.length)})
    resp = client.send(request)
    assert resp.status_code == 201
    assert server.received == [BODY[1000:-1000]]
    assert resp.text == hashlib.sha256(BODY[1000:-1000]).hexdigest()
    assert sum(progress) == region.length
    # Re-sendable: the same region again on the kept-alive connection.
    assert client.send(request).status_code == 201 and server.connections == 1


def test_a_file_that_shrank_is_an_input_error(server, client, tmp_path):
    path = tmp_path / "weights"
    path.write_bytes(BODY[:100])
    region = FileRegion(path, 0, len(BODY))
    request = httpx.Request("PUT", url(server, "/up"), stream=region,
                            headers={"Content-Length": str(len(BODY))})
    with pytest.raises(InputError, match="changed while"):
        client.send(request)
    assert client.get(url(server, "/blob")).content == BODY  # the pool is still usable


def test_a_truncated_body_is_a_transport_error(server, client):
    with pytest.raises(httpx.TransportError):
        client.get(url(server, "/short"))


def test_connection_refused_is_a_connect_error(client):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")
