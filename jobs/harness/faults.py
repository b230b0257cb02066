"""The one fault injector: a loopback HTTP proxy in front of moto that fails requests or goes dark, which is
what a flaky network, a throttled AWS or an unreachable endpoint looks like to botocore.

Each request is read whole, then either answered with a fault (a 500 or 503 with an AWS-style error body, or the
connection closed without an answer) or forwarded to moto and its answer passed back. Those faults strike
*before* forwarding, so moto never sees a request the client was told failed: the transient failures SQS and S3
ask clients to retry. :meth:`FaultProxy.down` is an outage instead: open connections are cut (answers in flight
are lost, though moto may have acted on the request) and new ones refused until :meth:`FaultProxy.up`; moto keeps
its state, as AWS does through an outage of its endpoint. Point ``AWS_ENDPOINT_URL`` at :attr:`FaultProxy.url`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Fault = int | str  # 500, 503, or "drop"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class FaultProxy:
    """Forwards to ``upstream``; :meth:`fail_next` queues faults for the next requests, ``every`` (with
    ``max_faults``) fails every n-th request with ``kinds`` in turn, and :meth:`block` answers every request of
    the named operations with a 503 until unblocked (an outage of one service); :meth:`down` / :meth:`up` take
    the whole endpoint away and back (connections cut and refused)."""

    def __init__(self, upstream: str, *, every: int = 0, kinds: tuple[Fault, ...] = (503, "drop", 500),
                 max_faults: int = 0, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.every, self.kinds, self.max_faults = every, kinds, max_faults
        self.planned: deque[Fault] = deque()
        self.blocked: frozenset[str] = frozenset()
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()  # by operation (X-Amz-Target or method + first path part)
        self.cut = 0  # client connections cut by down()
        self.is_down = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = self._listen(port)
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))  # allow_reuse_address: set
        server.daemon_threads = True
        return server

    def start(self) -> FaultProxy:
        if self._server is None:
            self._server = self._listen(self.port)
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05),
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def stop(self) -> None:
        self._close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def down(self) -> None:
        """An outage: refuse new connections and cut every open one (answers in flight never arrive)."""
        with self._lock:
            self.is_down = True
            doomed = list(self._open)
        self._close()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self.cut += 1

    def up(self) -> None:
        """The endpoint is back, on the same port."""
        with self._lock:
            self.is_down = False
        self.start()

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.planned.extend(faults)

    def block(self, *operations: str) -> None:
        """503 for every request of these operations (e.g. ``"GET s3"``, ``"PUT s3"``); none unblocks."""
        with self._lock:
            self.blocked = frozenset(operations)

    def _decide(self, operation: str) -> Fault | None:
        with self._lock:
            self.requests += 1
            if operation in self.blocked:
                return 503
            if self.planned:
                return self.planned.popleft()
            total = sum(self.injected.values())
            if self.every and self.requests % self.every == 0 and (not self.max_faults or total < self.max_faults):
                return self.kinds[total % len(self.kinds)]
            return None


def _operation(handler: BaseHTTPRequestHandler) -> str:
    target = handler.headers.get("X-Amz-Target")
    return target.rsplit(".", 1)[-1] if target else f"{handler.command} s3"


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy._open.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._open.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            if proxy.is_down:
                self.close_connection = True  # cut by the outage
                return
            operation = _operation(self)
            fault = proxy._decide(operation)
            if fault == "drop":
                with proxy._lock:
                    proxy.injected["drop"] += 1
                self.close_connection = True  # closed with no answer at all
                return
            if fault is not None:
                with proxy._lock:
                    proxy.injected[str(fault)] += 1
                code = "ServiceUnavailable" if fault == 503 else "InternalError"
                payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                           f"<Message>injected by the test's fault proxy</Message></Error>").encode()
                self.send_response(int(fault))
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            with proxy._lock:
                proxy.forwarded[operation] += 1
            if proxy.is_down:  # the answer is lost with the connection, as when the endpoint goes dark
                self.close_connection = True
                return
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:  # the connection was cut (down()) or the client went away
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler
