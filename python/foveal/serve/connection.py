"""The HTTP connection ``foveal serve`` runs: uvicorn's httptools protocol with what it lacks for a service on a
network: a deadline and a size limit for a request's headers, and JSON bodies on the errors uvicorn answers itself.

Without them, uvicorn keeps a connection that never sends a request, or sends its headers a byte a minute, open for
ever (a few hundred of them exhaust the process's file descriptors), and takes headers without end (300 MB in 0.6 s
on loopback, all held in memory). The deadline runs from the moment a connection opens, and again from the first
byte of each request on a kept-alive one, to the end of its headers; the body has its own timeout
(``ServeConfig.request_timeout_s``) and size limit, and idle kept-alive connections uvicorn's timeout.

An answer has a deadline too: uvicorn hands it whole to the connection's write buffer, and a client that reads
none of it would hold that memory for ever (a 40 MP map as ``.npy`` is 160 MB). While the buffer is over its high
mark, a client that has read nothing for ``send_timeout_s`` is cut off (as nginx's ``send_timeout``: a slow reader
that keeps reading is not).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
from http import HTTPStatus
from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("foveal.serve")

#: The most bytes a request line and its headers may take (nginx's default buffers hold 32 KiB, Node's 16 KiB).
MAX_HEADER_BYTES = 64 * 2**10
#: How long a refused request's remaining bytes are read and dropped after its answer: closing a socket with unread
#: bytes sends a reset, which can destroy the answer before the client reads it.
LINGER_S = 2.0
#: Set in the scope of a request the connection answered itself after the app had started on it (a body that is
#: not HTTP: a bad chunk size): the app then sees a disconnect, which is not the client leaving.
MALFORMED = "foveal.malformed"


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that has been answered."""


class Connection(HttpToolsProtocol):
    """One client connection: its request headers must all arrive within ``header_timeout_s`` of its opening,
    or of the request's first byte."""

    def __init__(self, *args: Any, header_timeout_s: float, send_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The service has no WebSocket endpoint: a handshake is answered as the plain HTTP request it also is (RFC
        # 9110 7.8 lets a server ignore Upgrade), through the app's key check, JSON errors and /metrics.
        self.ws_protocol_class = None
        self.header_timeout_s, self.send_timeout_s = header_timeout_s, send_timeout_s
        self._send_watch: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting in the write buffer when the watch was last armed
        self._deadline: asyncio.TimerHandle | None = None
        self._request_begun = False
        self._in_headers = True  # the bytes arriving are a request line or headers
        self._header_bytes = 0  # every byte read while in headers, so also a header still unfinished
        self._head_bytes = 0  # the request line's and headers' own bytes, known once they are complete
        self._trailing = False  # a chunk's size line was read and none of its data yet: after the last, trailers
        self._trailer_bytes = 0  # the trailer fields' own bytes, as parsed
        self._refused = False  # answered with an error: what the client still sends is dropped
        self._ends = False  # the answer being sent said Connection: close
        self._answering: Any = None  # the cycle whose answer is being sent: pipelined requests parse ahead of it
        # The answer to a request refused here while whole requests before it wait for theirs: sent after them
        self._refused_next: tuple[int, str, str] | None = None
        self._dropped: Any = None  # that request's cycle, if it had one: taken out of the pipeline, never run
        # uvicorn's own log of a request its parser refuses: a client's mistake, answered 400, is no news for the
        # operator (and anyone could fill the log with it)
        self.logger = _ParserWarningsDropped(self.logger, {})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Checked once the parser has seen the bytes: a chunk that ends the headers may carry a large body after them
        # (headers that end in it are measured in on_headers_complete), and the parser may have refused it already.
        if self._in_headers and self._header_bytes > MAX_HEADER_BYTES and not self._refused:
            self._too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = self._in_headers = True
        self._head_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._trailing:
            # A trailer field of a chunked body: uvicorn would add it to the headers the app (and its key check) has
            # already read, or reads only if it came in time (RFC 9110 6.5: never merged), so it is dropped. Counted
            # here: those in the read that ended the body were not, and took about 64 KiB more than the limit.
            self._trailer_bytes += len(name) + len(value) + 4
            if self._trailer_bytes > MAX_HEADER_BYTES:
                self._too_large()
                raise _Refused
            return
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF

    def on_chunk_header(self) -> None:
        # What follows a chunk's size line is measured as headers are until its data begins: after the last
        # (empty) chunk, trailer fields, which would otherwise be read without limit.
        self._trailing = self._in_headers = True
        self._header_bytes = self._trailer_bytes = 0

    def on_body(self, body: bytes) -> None:
        self._trailing = self._in_headers = False
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._trailing = self._in_headers = False
        self._header_bytes = 0
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._request_begun = self._in_headers = False
        self._header_bytes = 0
        if self._head_bytes > MAX_HEADER_BYTES:  # they came whole in one read, so data_received never saw them open
            self._too_large()
            raise _Refused  # stops the parser: the request never reaches the app
        if self.parser.should_upgrade() and _has_body(self.headers):
            # The parser takes what follows an upgrade request's headers for the new protocol's: the body is lost.
            self._refuse(400, "bad_request", "a request with a body cannot ask for a protocol upgrade here; send it "
                                             "without the Upgrade header")
            raise _Refused
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.send = self._ending_send(self.cycle)

    def _ending_send(self, cycle: Any) -> Callable:
        """``cycle.send`` for an answer that may start before its request's body has all arrived (a refusal, a
        timeout): such a connection ends after the answer (:meth:`on_response_complete`), and the answer says so
        (``Connection: close``), or a client would send its next request into a closing connection."""
        send = cycle.send

        async def ending_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self._answering = cycle
            if message["type"] != "http.response.start" or not cycle.more_body:
                await send(message)
                return
            self._ends = True
            cycle.keep_alive = False  # uvicorn then writes the header ...
            try:
                await send(message)
            finally:
                cycle.keep_alive = True  # ... but does not close at once: unread bytes would reset the answer

        return ending_send

    def _unsupported_upgrade_warning(self) -> None:
        """The parser stopped after an upgrade request's headers, which is answered as plain HTTP: what followed
        them in the same read was taken for the other protocol's, so the connection ends after the answer.  Not
        logged (uvicorn warns): a client's header is no news for the operator."""
        if self.cycle is not None:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        # The answered request, not self.cycle: that is the last one parsed, which may be a pipelined request
        # behind it whose body is still arriving, and it would be dropped unanswered.
        cycle, self._answering = self._answering or self.cycle, None
        if cycle is not None and (self._ends or cycle.more_body) and not self.transport.is_closing():
            # Answered before its body had all arrived (a refusal, a timeout): kept alive, the connection would go
            # on reading the rest, of any length, with no deadline.
            self.server_state.total_requests += 1
            self.flow.resume_reading()  # what is still coming is read and dropped, not left to reset the answer
            self._close_gently()
            return
        super().on_response_complete()
        if self._refused_next is not None and not self.pipeline and (
                self.cycle.response_complete or self.cycle is self._dropped):
            (status, code, message), self._refused_next = self._refused_next, None
            self._answer(status, code, message)
        elif self._request_begun and self.timeout_keep_alive_task is not None:
            # The next request has begun (pipelined behind this one, its headers not all here): its header deadline
            # runs, not uvicorn's idle timer, which cut it off silently at --keep-alive-s instead of a 408.
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unwatch_send()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_send()

    def resume_writing(self) -> None:
        self._unwatch_send()
        super().resume_writing()

    def _watch_send(self) -> None:
        self._unwatch_send()
        self._unsent = self.transport.get_write_buffer_size()
        self._send_watch = self.loop.call_later(self.send_timeout_s, self._send_stalled)

    def _unwatch_send(self) -> None:
        if self._send_watch is not None:
            self._send_watch.cancel()
            self._send_watch = None

    def _send_stalled(self) -> None:
        self._send_watch = None
        # Not is_closing(): uvicorn closes an idle kept-alive connection after its answer, and close() waits for the
        # unread buffer to drain, for ever if the client reads nothing.
        if self.transport.get_write_buffer_size() == 0:
            return
        if self.transport.get_write_buffer_size() < self._unsent:  # it reads, slowly: another period
            self._watch_send()
            return
        log.info("closing a connection from %s: it read none of its answer for %g s", self.client, self.send_timeout_s)
        self.transport.abort()  # close() would wait for the buffer to drain: the memory is what must go

    def send_400_response(self, msg: str) -> None:
        if self._refused:  # the parser stopped at a request already answered (431)
            return
        message = f"{msg.rstrip('.')}: this is not an HTTP/1.1 request foveal can read"
        if self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body \
                and not self._queued(self.cycle):
            self.cycle.scope[MALFORMED] = True  # the app has the request, and sees the client leave
        self._refuse(400, "bad_request", message)

    def _too_large(self) -> None:
        if self._trailing:
            if self.cycle is not None and not self.cycle.response_complete and not self._queued(self.cycle):
                self.cycle.scope[MALFORMED] = True  # the app has the request, and sees the client leave
            self._refuse(431, "headers_too_large", f"the trailer fields after the chunked body take over "
                                                   f"{MAX_HEADER_BYTES} bytes; send the body without them")
            return
        self._refuse(431, "headers_too_large", f"the request line and headers take over {MAX_HEADER_BYTES} bytes; "
                                               "send fewer or shorter headers")

    def _queued(self, cycle: Any) -> bool:
        """Whether ``cycle``'s request waits behind others (pipelined): the app has not started on it."""
        return any(queued is cycle for queued, _ in self.pipeline)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer the request being read with an error, after the whole requests before it: answered at once, it
        took the place of their answers (and uvicorn's, written after it, failed with tracebacks). A request that
        waits behind them with its own cycle leaves the pipeline: it will never run."""
        queued = self.cycle is not None and self._queued(self.cycle) and self.cycle.more_body
        if queued:  # queued: a request before it is still being answered (else uvicorn would have started it)
            self._dropped = self.cycle
            self.pipeline = type(self.pipeline)(item for item in self.pipeline if item[0] is not self.cycle)
        waiting = queued or self.pipeline or (self.cycle is not None and not self.cycle.response_complete
                                              and not self.cycle.more_body)
        if waiting:
            self._refused_next, self._refused = (status, code, message), True
            self._disarm()
            return
        self._answer(status, code, message)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind one still being answered: uvicorn stops reading until that one is done.
            self._arm()
            return
        if not self._request_begun:  # nothing to answer: a connection that never said anything is closed
            self.transport.close()
            return
        self._answer(408, "request_timeout", f"the request's headers did not arrive within {self.header_timeout_s:g} "
                                             "s; send them in one go")

    def _answer(self, status: int, code: str, message: str) -> None:
        """The JSON error answer, then the end of the connection (:meth:`_close_gently`)."""
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self._close_gently()

    def _close_gently(self) -> None:
        """End the connection after its answer: what the client still sends is dropped for :data:`LINGER_S`
        first."""
        self._disarm()
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._deadline = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()


class _ParserWarningsDropped(logging.LoggerAdapter):
    """uvicorn's error logger, less its warning for each request its parser refuses (answered 400 all the same)."""

    @property
    def level(self) -> int:  # uvicorn reads it to decide on its trace lines
        return self.logger.level

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg != "Invalid HTTP request received.":
            super().warning(msg, *args, **kwargs)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these headers (names in lower case) has a body."""
    return any(name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
               for name, value in headers)


def connection_factory(header_timeout_s: float, send_timeout_s: float) -> Callable[..., Connection]:
    """What uvicorn's ``http`` setting takes: it builds each connection with these deadlines (a partial of a
    module-level class, so it pickles into ``workers > 1``'s processes)."""
    return functools.partial(Connection, header_timeout_s=header_timeout_s, send_timeout_s=send_timeout_s)
