"""moto server with keep-alive connections, as AWS's endpoints have (dev only; nothing ships).

moto server runs on werkzeug's development server, which answers every request with
``Connection: close``: its own comment says Python's ``http.server`` cannot drain an unread
request body before the next request line, so it drains the socket after each response and
closes it. Every AWS call of the local stack therefore paid a new TCP connection and a new server
thread, and botocore's pool, which AWS keeps alive, never reused a connection: 10 conditional
``PutItem``s in parallel took 19.2 ms against 15.5 ms kept alive, 2.3 against 2.0 ms one after
another (measured 2026-12-07).

The handler here reads each request's whole body before the application runs, so there is
nothing left to drain and the connection can stay open. The rest is werkzeug's and moto's
(``MotoRequestHandler.make_environ``, the threaded server: one thread per connection, so a long
poll holds only its own). Headers and body go out in one write with Nagle off: with Nagle on, a
kept-alive connection waits for the peer's delayed ACK (~40 ms) on every response. No library
offers this: werkzeug's server cannot keep a connection alive, and a pooled WSGI server
(waitress, cheroot) would cap the long polls the soaks hold open at its pool size.
"""

from __future__ import annotations

import io
import logging
from threading import Event, Thread
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, DechunkedInput, make_server

LOG = logging.getLogger("dev.stack.keepalive")
IDLE_SECONDS = 120  # an idle kept-alive connection closes (botocore reconnects on its next call)
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


class KeepAliveRequestHandler(MotoRequestHandler):
    """One request of a kept-alive connection: body read whole, reply sent with its length."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_SECONDS

    def log_error(self, format: str, *args: Any) -> None:
        """An idle kept-alive connection timing out is routine, not an error worth a line."""
        if format.startswith("Request timed out"):
            return
        super().log_error(format, *args)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(self._read_body(environ))
        environ["wsgi.input_terminated"] = True
        reply: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            reply[:] = [status, headers]
            return reply.append  # the WSGI write() callable (unused by Flask)

        try:
            chunks = self.server.app(environ, start_response)
            try:
                body = b"".join([*reply[2:], *chunks])
            finally:
                getattr(chunks, "close", lambda: None)()
        except Exception:  # answer 500 and close, as werkzeug's server does
            LOG.exception("moto server failed on %s %s", self.command, self.path)
            self.close_connection = True
            reply[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            body = b"Internal Server Error"
        self._reply(reply[0], reply[1], body)

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        if isinstance(environ["wsgi.input"], DechunkedInput):  # Transfer-Encoding: chunked
            return environ["wsgi.input"].read()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code, _, reason = status.partition(" ")
        lines = [f"{self.protocol_version} {code} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_BY_HOP]
        lines += [f"Server: {self.version_string()}", f"Date: {self.date_time_string()}"]
        length = len(body)
        if self.command == "HEAD":  # the length the GET would have, as the application says
            length = int(next((v for n, v in headers if n.lower() == "content-length"), length))
        lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)
        self.wfile.flush()
        self.log_request(code, len(body))


class KeepAliveMotoServer:
    """``moto.server.ThreadedMotoServer``'s interface (start, stop, host and port) on the handler
    above."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._ip_address = ip_address
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: Thread | None = None
        self._ready = Event()

    def _serve(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self._ip_address, self._port, app, threaded=True, request_handler=KeepAliveRequestHandler
        )
        self._ready.set()
        self._server.serve_forever()

    def start(self) -> None:
        self._thread = Thread(target=self._serve, name="moto-server", daemon=True)
        self._thread.start()
        self._ready.wait()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._ready.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
