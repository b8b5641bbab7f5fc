"""uvicorn's httptools protocol with a cap on the size of a request's head.

llhttp (under httptools) buffers a request line and headers of any size, and uvicorn sets
no limit for it; only uvicorn's h11 protocol has one (``h11_max_incomplete_event_size``),
and h11 serves small requests about 40% slower than httptools (loopback, ``GET /v2/``).
This protocol reads the same uvicorn option, so the one setting caps the head under
either implementation: ``uvicorn.run(app, http=HttpToolsProtocol,
h11_max_incomplete_event_size=N)``.
"""

from __future__ import annotations

from uvicorn.protocols.http import httptools_impl

# h11's own default, for a Config that does not set the option.
DEFAULT_MAX_HEAD_BYTES = 16 * 1024
# How long a refused connection drains what the client still sends before it is closed.
LINGER_SECONDS = 5.0
_REASON = b"request line and headers too large"


class HttpToolsProtocol(httptools_impl.HttpToolsProtocol):
    """Answers **431** and ends the connection, before the application sees the request,
    when a request's URL and header lines exceed the limit, or when more than the limit
    has been read without its headers being complete (so what is held while a head
    arrives is at most the limit plus one read)."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self.in_head = False  # a request has begun and its headers are not complete
        self.head_read = 0  # bytes read while the current head was incomplete
        self.refused = False
        self.refused_answered = False

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # dropped: closing with unread data would reset the 431 away
        super().data_received(data)
        if self.in_head and not self.refused:
            self.head_read += len(data)
            self.refused = self.head_read > self.max_head_bytes
        if self.refused:
            self._answer_431()

    # Parser callbacks: once refused, the rest of what was read is parsed but ignored.
    # on_url and on_header are left to uvicorn (they run per header, on every request):
    # the head is measured once, from what they collected, when it is complete.
    def on_message_begin(self) -> None:
        if not self.refused:
            self.in_head, self.head_read = True, 0
            super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        self.in_head = False
        # The URL and header lines as parsed (": " and CRLF are 4 bytes a header).
        size = len(self.url) + 4 * len(self.headers) + sum(
            len(name) + len(value) for name, value in self.headers)
        if size > self.max_head_bytes:
            self.refused = True  # answered when the parser returns to data_received
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.refused:
            self._answer_431()

    def _answer_431(self) -> None:
        """The 431, once the responses to requests before the refused one are out."""
        if self.transport.is_closing() or self.pipeline or (
                self.cycle is not None and not self.cycle.response_complete):
            return  # again from on_response_complete
        if self.refused_answered:
            return
        self.refused_answered = True
        self.logger.warning("Refused a request: its request line and headers exceed %d "
                            "bytes.", self.max_head_bytes)
        self.transport.write(b"".join([
            httptools_impl.STATUS_LINE[431],
            *(name + b": " + value + b"\r\n"
              for name, value in self.server_state.default_headers),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(_REASON),
            b"connection: close\r\n\r\n",
            _REASON,
        ]))
        # Half-close and drain what the client is still sending, so that it reads the
        # answer; the connection ends when the client closes or after LINGER_SECONDS.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
