"""``python -m dev.tools.replay``: the signed sample webhooks over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dev.fakes.signing import EVENTS_DIR, KEYS_DIR
from dev.tools.replay import main

pytestmark = pytest.mark.integration


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def replay(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv], stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


# ----- replay -------------------------------------------------------------------------------------


class Capture(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CaptureHandler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_type: str | None = None


class CaptureHandler(BaseHTTPRequestHandler):
    server: Capture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        failing = self.server.fail_type and json.loads(body)["type"] == self.server.fail_type
        status = 500 if failing else 202
        payload = json.dumps({"status": "failed" if failing else "accepted"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def verify_ed25519(body: bytes, signature: str) -> None:
    key = serialization.load_pem_public_key((KEYS_DIR / "ed25519-public.pem").read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    key.verify(base64.b64decode(signature), body)  # raises when invalid


def test_replay_resigns_samples_with_fresh_ids(capture: Capture) -> None:
    url = f"http://127.0.0.1:{capture.server_address[1]}/webhooks/appointments"
    run = replay("--url", url)
    samples = sorted((EVENTS_DIR / "webhooks").glob("*.json"))
    assert run.code == 0, run.out
    assert [line.split()[:2] for line in run.out.splitlines()] == [[f"{p.name}:", "202"] for p in samples]
    assert "replay [" in run.err and f"{len(samples)}/{len(samples)}" in run.err
    assert len(capture.requests) == len(samples)
    originals = {json.loads(p.read_bytes())["webhookId"] for p in samples}
    for path, headers, body in capture.requests:
        assert path == "/webhooks/appointments"
        verify_ed25519(body, headers["x-ghl-signature"])
        assert json.loads(body)["webhookId"] not in originals


def test_replay_keep_ids_and_reports_failures(capture: Capture) -> None:
    capture.fail_type = "AppointmentDelete"
    url = f"http://127.0.0.1:{capture.server_address[1]}/hook"
    sample = EVENTS_DIR / "webhooks" / "delete.json"
    other = EVENTS_DIR / "webhooks" / "create.json"
    run = replay("--url", url, "--keep-ids", "--scheme", "both", str(sample), str(other))
    assert run.code == 1
    assert "delete.json: 500" in run.out and "create.json: 202" in run.out
    sent = [json.loads(body)["webhookId"] for _, _, body in capture.requests]
    assert sent == [json.loads(sample.read_bytes())["webhookId"], json.loads(other.read_bytes())["webhookId"]]
    assert all("x-wh-signature" in headers for _, headers, _ in capture.requests)


def test_replay_to_a_closed_port_is_a_partial_failure() -> None:
    run = replay(
        "--url",
        "http://127.0.0.1:9/x",
        "--timeout",
        "2",
        str(EVENTS_DIR / "webhooks" / "create.json"),
    )
    assert run.code == 1 and "create.json: error" in run.out


def test_usage_errors_exit_2() -> None:
    assert replay("--scheme", "nope").code == 2
    assert replay("--help").code == 0
