"""The local stack's moto server keeps connections alive, as AWS's endpoints do
(``dev/stack/keepalive.py``): werkzeug's server closed each one after its first answer."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from dev.stack.awslocal import aws_client

pytestmark = pytest.mark.integration

LIST_TABLES = {"X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0"}
AUTH = {"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/dynamodb/aws4_request"}


def _connection(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def test_requests_share_one_connection(moto_server: str) -> None:
    connection = _connection(moto_server)
    connection.request("POST", "/", body=b"{}", headers={**LIST_TABLES, **AUTH})
    first = connection.getresponse()
    assert first.status == 200 and "TableNames" in json.loads(first.read())
    assert not first.will_close and first.getheader("Connection") is None
    sock = connection.sock
    connection.request("POST", "/", body=b"{}", headers={**LIST_TABLES, **AUTH})
    second = connection.getresponse()
    assert second.status == 200 and "TableNames" in json.loads(second.read())
    assert connection.sock is sock  # the same socket: no reconnect in between
    connection.close()


def test_a_chunked_body_is_read_whole_and_the_next_request_still_answers(moto_server: str) -> None:
    """The body is consumed before the application runs, so nothing of it is taken for the next
    request line (werkzeug's reason for closing every connection)."""
    parts = urlsplit(moto_server)
    body = b"{}"
    head = (
        f"POST / HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Amz-Target: {LIST_TABLES['X-Amz-Target']}\r\n"
        f"Content-Type: {LIST_TABLES['Content-Type']}\r\nAuthorization: {AUTH['Authorization']}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunked = head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    plain = head.replace(b"Transfer-Encoding: chunked", b"Content-Length: 2") + body
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        sock.sendall(chunked + plain)  # both at once: the second must not be drained as the first's rest
        reader = sock.makefile("rb")
        for _ in range(2):
            status, headers = reader.readline(), http.client.parse_headers(reader)
            assert status.split()[1] == b"200"
            assert "TableNames" in json.loads(reader.read(int(headers["Content-Length"])))


def test_a_head_request_gets_headers_only_and_the_connection_stays_usable(moto_server: str) -> None:
    s3 = aws_client("s3", moto_server)
    bucket = f"keepalive-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    connection = _connection(moto_server)
    s3_auth = {"Authorization": AUTH["Authorization"].replace("/dynamodb/", "/s3/")}
    connection.request("HEAD", f"/{bucket}/k", headers=s3_auth)
    head = connection.getresponse()
    assert head.status == 200 and head.read() == b"" and head.getheader("Content-Length") == "10"
    connection.request("GET", f"/{bucket}/k", headers=s3_auth)
    got = connection.getresponse()
    assert got.status == 200 and got.read() == b"0123456789"
    connection.close()


def test_botocore_connects_once_for_many_calls(moto_server: str, caplog: pytest.LogCaptureFixture) -> None:
    dynamodb = aws_client("dynamodb", moto_server)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for _ in range(3):
            dynamodb.list_tables()
    connects = [r.getMessage() for r in caplog.records if "new HTTP connection" in r.getMessage()]
    reconnects = [r.getMessage() for r in caplog.records if "Resetting dropped connection" in r.getMessage()]
    assert len(connects) == 1 and reconnects == []


def test_an_idle_connection_closes_quietly(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle kept-alive connection is closed after the handler's timeout, without a log line
    (``make run`` would otherwise print one per idle connection of every client)."""
    from dev.stack.keepalive import KeepAliveRequestHandler  # noqa: PLC0415

    monkeypatch.setattr(KeepAliveRequestHandler, "timeout", 0.3)
    connection = _connection(moto_server)
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        connection.request("POST", "/", body=b"{}", headers={**LIST_TABLES, **AUTH})
        assert connection.getresponse().read()
        sock = connection.sock
        assert sock is not None
        sock.settimeout(5)
        assert sock.recv(1) == b""  # the server closed it once idle
    assert not [r for r in caplog.records if "timed out" in r.getMessage()]
    connection.close()
