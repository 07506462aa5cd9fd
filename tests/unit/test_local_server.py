"""The start/stop base of the dev stack's HTTP servers (dev/fakes/server.py), over real HTTP."""

from __future__ import annotations

import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dev.fakes.faultproxy import FaultProxy
from dev.fakes.sandbox import SandboxServer
from dev.fakes.server import LocalServer
from dev.stack.gateway import Gateway


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *_args: object) -> None:
        pass


class HelloServer(LocalServer):
    thread_name = "hello"
    poll_interval = 0.02

    def _make_server(self) -> ThreadingHTTPServer:
        return ThreadingHTTPServer(("127.0.0.1", 0), Hello)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def test_start_serves_on_url_and_stop_closes_the_port() -> None:
    server = HelloServer().start()
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    assert get(url) == b"hi"
    assert server.start() is server  # starting twice is one server
    server.stop()
    assert server.url == url  # the address stays what it was, nothing is bound again
    with pytest.raises(OSError):
        get(url)
    server.stop()  # twice is harmless


def test_context_manager_and_stop_without_start() -> None:
    with HelloServer() as server:
        assert get(server.url) == b"hi"
    with pytest.raises(OSError):
        get(server.url)
    HelloServer().stop()  # never started: returns at once (no shutdown() waiting on a loop)
    bound = HelloServer()
    assert bound.url.startswith("http://127.0.0.1:")  # url binds; stop() closes it unserved
    bound.stop()


def test_the_local_servers_share_the_base() -> None:
    assert all(issubclass(cls, LocalServer) for cls in (SandboxServer, Gateway, FaultProxy))
