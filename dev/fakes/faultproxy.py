"""A fault-injecting HTTP proxy in front of moto server (dev only): SQS, or any JSON-protocol service.

Point a client's ``AWS_ENDPOINT_URL`` at :attr:`FaultProxy.url` and every request is forwarded
to moto unchanged, unless a fault is set. Faults apply only to the operations named in
``operations`` (default ``SendMessage``, read from the ``X-Amz-Target`` header of SQS's JSON
protocol, which boto3 uses for SQS), so a test's own queue reads are never disturbed.

Faults, for proving the receiver answers 429 in time whatever the queue does:

* ``Fault.error(500)`` / ``Fault.error(503)``: an HTTP error, the request never reaches moto;
* ``Fault.throttle()``: 400 with a ``ThrottlingException`` JSON error body and the
  ``x-amzn-query-error`` header, as SQS answers a throttled JSON-protocol request;
* ``Fault.hang()``: read the request, answer nothing until the fault is cleared (or ``seconds``);
* ``Fault.trickle()``: forward to moto (the write lands), then send its answer 1 byte a second,
  which botocore's per-read timeout never catches;
* ``Fault.landed_then_error(500)``: forward to moto (the write lands), then answer an error;
* ``Fault.passthrough()``: no fault for that one request (to queue "the 2nd to 5th fail").

Set a standing fault with :meth:`FaultProxy.set_fault` (``None`` clears it and releases hangs),
or queue one-off faults for the next matching requests with :meth:`FaultProxy.queue`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from dev.fakes.server import LocalServer

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"})


@dataclass(frozen=True)
class Fault:
    kind: str  # passthrough | error | throttle | hang | trickle | landed_then_error
    status: int = 500
    seconds: float = 60.0  # hang: longest wait; trickle: delay between bytes is 1 / bytes_per_second
    bytes_per_second: float = 1.0

    @classmethod
    def passthrough(cls) -> Fault:
        """No fault for this one request (a place holder in a queue of one-off faults)."""
        return cls("passthrough")

    @classmethod
    def error(cls, status: int) -> Fault:
        return cls("error", status=status)

    @classmethod
    def throttle(cls) -> Fault:
        return cls("throttle", status=400)

    @classmethod
    def hang(cls, seconds: float = 60.0) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def trickle(cls, bytes_per_second: float = 1.0) -> Fault:
        return cls("trickle", bytes_per_second=bytes_per_second)

    @classmethod
    def landed_then_error(cls, status: int = 500) -> Fault:
        return cls("landed_then_error", status=status)

    @property
    def forwards(self) -> bool:
        """Whether the request reaches moto (the write lands) despite the fault."""
        return self.kind in ("passthrough", "trickle", "landed_then_error")


@dataclass
class ProxyStats:
    requests: Counter[str] = field(default_factory=Counter)  # operation -> requests seen
    faulted: Counter[str] = field(default_factory=Counter)  # fault kind -> requests faulted
    forwarded: int = 0  # requests that reached moto (including faulted ones that land)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _throttle_body() -> bytes:
    return json.dumps(
        {"__type": "com.amazonaws.sqs#ThrottlingException", "message": "Rate exceeded (fault proxy)"}
    ).encode()


class FaultProxy(LocalServer):
    """``FaultProxy(moto_url).start()``; ``.url`` for clients; ``.set_fault(...)``; ``.stop()``."""

    thread_name = "faultproxy"

    def __init__(self, upstream: str, *, operations: tuple[str, ...] = ("SendMessage",)) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.operations = operations
        self.stats = ProxyStats()
        self._standing: Fault | None = None
        self._queued: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()  # set: the hangs and trickles of this generation give up
        self._generations: list[threading.Event] = [self._released]
        super().__init__()
        self.bind()

    def _make_server(self) -> ThreadingHTTPServer:
        return ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())

    def _on_stop(self) -> None:
        self._release_all()

    def set_fault(self, fault: Fault | None) -> None:
        """A fault for every matching request until cleared; ``None`` clears it and releases hangs."""
        with self._lock:
            self._standing = fault
            self._queued.clear()
            if fault is None:
                self._release_all()
            self._new_generation()

    def queue(self, faults: list[Fault]) -> None:
        """One-off faults for the next matching requests, in order."""
        with self._lock:
            self._queued.extend(faults)

    def pending(self) -> int:
        """One-off faults queued and not yet used."""
        with self._lock:
            return len(self._queued)

    def _new_generation(self) -> None:
        self._released = threading.Event()
        self._generations.append(self._released)

    def _release_all(self) -> None:
        for event in self._generations:
            event.set()
        self._generations = [self._released]

    def _take(self, operation: str) -> tuple[Fault | None, threading.Event]:
        with self._lock:
            if operation not in self.operations:
                return None, self._released
            if self._queued:
                return self._queued.popleft(), self._released
            return self._standing, self._released

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
            forwarded["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            payload = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        finally:
            connection.close()
        with self.stats.lock:
            self.stats.forwarded += 1
        return response.status, out, payload

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_ProxyHandler,), {"proxy": self})


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> bool:
    """Poll ``condition()`` until true or ``timeout`` seconds (a bounded loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards to moto, or plays the fault ``proxy`` has queued for the operation."""

    proxy: FaultProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        fault: Fault,
        released: threading.Event,
    ) -> None:
        head = [f"HTTP/1.1 {status} Slow".encode()]
        head += [f"{k}: {v}".encode() for k, v in headers if k.lower() not in ("content-length",)]
        head += [f"Content-Length: {len(body)}".encode(), b"", b""]
        data = b"\r\n".join(head) + body
        self.close_connection = True
        for index in range(len(data)):
            if released.wait(1.0 / fault.bytes_per_second):
                return  # the test is over: drop the connection
            try:
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
            except OSError:
                return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1] if target else "unknown"
        with self.proxy.stats.lock:
            self.proxy.stats.requests[operation] += 1
        fault, released = self.proxy._take(operation)
        headers = list(self.headers.items())
        if fault is None or fault.kind == "passthrough":
            self._reply(*self.proxy._forward("POST", self.path, headers, body))
            return
        with self.proxy.stats.lock:
            self.proxy.stats.faulted[fault.kind] += 1
        if fault.kind == "error":
            error = json.dumps({"__type": "InternalFailure", "message": "fault proxy"}).encode()
            self._reply(fault.status, [("Content-Type", "application/x-amz-json-1.0")], error)
        elif fault.kind == "throttle":
            self._reply(
                400,
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("x-amzn-query-error", "ThrottlingException;Sender"),
                ],
                _throttle_body(),
            )
        elif fault.kind == "hang":
            released.wait(fault.seconds)
            self.close_connection = True  # no answer at all
        elif fault.kind == "trickle":
            status, out, payload = self.proxy._forward("POST", self.path, headers, body)
            self._trickle(status, out, payload, fault, released)
        elif fault.kind == "landed_then_error":
            self.proxy._forward("POST", self.path, headers, body)
            error = json.dumps({"__type": "InternalFailure", "message": "fault proxy"}).encode()
            self._reply(fault.status, [("Content-Type", "application/x-amz-json-1.0")], error)
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")

    def do_GET(self) -> None:
        status, out, payload = self.proxy._forward("GET", self.path, list(self.headers.items()), b"")
        self._reply(status, out, payload)
