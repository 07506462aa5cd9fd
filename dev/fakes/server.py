"""One start/stop base for the dev stack's threaded HTTP servers (sandbox, gateway, fault proxy).

A subclass says how to build its ``ThreadingHTTPServer`` (``_make_server``); the base binds it,
serves it on a daemon thread, answers ``url``, stops it (``shutdown`` + ``server_close`` + join) and
works as a context manager: ``with Server(...) as s:`` or ``s = Server(...).start()`` ... ``s.stop()``.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class LocalServer:
    thread_name = "local-server"
    poll_interval = 0.5  # serve_forever's poll: stop() waits up to one poll

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None  # kept after stop(): url stays what it was

    def _make_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def _on_stop(self) -> None:
        """Called first by ``stop()``: release whatever a handler thread may be waiting on."""

    def bind(self) -> ThreadingHTTPServer:
        """Bind now (a constructor may, so that ``url`` is known before ``start()``); idempotent."""
        if self._httpd is None:
            self._httpd = self._make_server()
            self._httpd.daemon_threads = True
            host, port = self._httpd.server_address[:2]
            self._address = (str(host), int(port))
        return self._httpd

    @property
    def url(self) -> str:
        if self._address is None:
            self.bind()
        assert self._address is not None
        host, port = self._address
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Serve on a daemon thread; returns self so ``Server(...).start()`` chains."""
        if self._thread is None:
            httpd = self.bind()
            self._thread = threading.Thread(
                target=httpd.serve_forever, args=(self.poll_interval,), name=self.thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._on_stop()
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
