"""A local stand-in for the endpoint in front of WebhookFunction (dev only): the HTTP API, or a
Lambda function URL (``endpoint=`` ``"HttpApi"`` | ``"FunctionUrl"``, the template's
``IntakeEndpoint``).

Each HTTP request becomes a payload format 2.0 event, the webhook handler is invoked with a fresh
Lambda context, and its result is written back the way a Lambda proxy response is mapped.
HttpApi: routes other than ``POST /webhooks/appointments`` get API Gateway's
``404 {"message":"Not Found"}``, bodies over the 10 MB payload limit 413, a handler that raises
or times out 500. FunctionUrl: every method and path reaches the handler (a function URL has no
routes), with ``routeKey``/``stage`` ``$default``, ``apiId`` the URL id and ``accountId``
``anonymous`` (AuthType NONE); bodies over the 6 MB invocation payload limit get 413, a handler
that raises or times out 502. Invocations are serialised (one warm container), as a single
Lambda instance would be.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dev.fakes.lambda_context import ACCOUNT_ID, make_context
from dev.fakes.lambda_loader import Handler
from dev.fakes.server import LocalServer

LOG = logging.getLogger("dev.stack.gateway")

ROUTE_METHOD = "POST"
ROUTE_PATH = "/webhooks/appointments"
ROUTE_KEY = f"{ROUTE_METHOD} {ROUTE_PATH}"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # HTTP API request payload quota
API_ID = "localapi01"
HTTP_API = "HttpApi"
FUNCTION_URL = "FunctionUrl"
FUNCTION_URL_ID = "localurl01"
FUNCTION_URL_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invocation payload quota

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")


def _is_text_content_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        return True
    return (
        media.startswith(_TEXT_TYPES)
        or media.endswith(_TEXT_SUFFIXES)
        or media == ("application/x-www-form-urlencoded")
    )


def encode_body(body: bytes, content_type: str = "application/json") -> tuple[str, bool]:
    """(body, isBase64Encoded) as API Gateway passes it: text when textual UTF-8, else base64."""
    if _is_text_content_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def build_http_api_event(
    *,
    body: bytes,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    method: str = ROUTE_METHOD,
    path: str = ROUTE_PATH,
    raw_query_string: str = "",
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
    time_epoch_ms: int | None = None,
    stage: str = "$default",
    domain_name: str = "localhost",
    force_base64: bool = False,
) -> dict[str, Any]:
    """An HTTP API payload v2.0 event for ``POST /webhooks/appointments``.

    Header names are lower-cased and repeated headers comma-joined; ``cookie`` headers move
    to ``cookies`` as API Gateway does.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in pairs:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    epoch_ms = time_epoch_ms if time_epoch_ms is not None else int(time.time() * 1000)
    req_id = request_id or base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    merged.setdefault("x-amzn-trace-id", f"Root=1-{epoch_ms // 1000:08x}-{uuid.uuid4().hex[:24]}")
    user_agent = merged.get("user-agent", "")

    if force_base64:
        body_text, is_b64 = base64.b64encode(body).decode("ascii"), True
    else:
        body_text, is_b64 = encode_body(body, merged.get("content-type", ""))

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": ROUTE_KEY,
        "rawPath": path,
        "rawQueryString": raw_query_string,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if raw_query_string:
        params: dict[str, str] = {}
        for key, value in parse_qsl(raw_query_string, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": user_agent,
        },
        "requestId": req_id,
        "routeKey": ROUTE_KEY,
        "stage": stage,
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)),
        "timeEpoch": epoch_ms,
    }
    if body:
        event["body"] = body_text
    event["isBase64Encoded"] = is_b64
    return event


def build_function_url_event(**kwargs: Any) -> dict[str, Any]:
    """The payload 2.0 event a Lambda function URL (AuthType NONE) sends: the HTTP API's shape,
    with the sentinels a function URL uses where API Gateway features are absent."""
    event = build_http_api_event(**kwargs)
    domain = f"{FUNCTION_URL_ID}.lambda-url.us-east-1.on.aws"
    event["routeKey"] = "$default"
    event["requestContext"].update(
        accountId="anonymous",
        apiId=FUNCTION_URL_ID,
        domainName=domain,
        domainPrefix=FUNCTION_URL_ID,
        routeKey="$default",
        stage="$default",
    )
    event["headers"]["host"] = domain
    return event


def proxy_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a handler result to (status, headers, body) like HTTP API payload v2.0 does.

    A dict with ``statusCode`` is used as is; anything else is taken as a 200 JSON body.
    """
    if isinstance(result, Mapping) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
        raw = result.get("body")
        if raw is None:
            body = b""
        elif result.get("isBase64Encoded"):
            body = base64.b64decode(str(raw))
        else:
            body = str(raw).encode("utf-8")
        if not any(k.lower() == "content-type" for k, _ in headers) and body:
            headers.append(("content-type", "application/json"))
        return status, headers, body
    if isinstance(result, str):
        return 200, [("content-type", "application/json")], result.encode("utf-8")
    return 200, [("content-type", "application/json")], json.dumps(result).encode("utf-8")


class Gateway(LocalServer):
    """``Gateway(handler).start()`` serves on 127.0.0.1; ``.url`` is the base URL, ``.stop()``."""

    thread_name = "gateway"

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        function_name: str = "WebhookFunction",
        timeout_seconds: float = 10.0,
        max_payload_bytes: int | None = None,
        force_base64: bool = False,
        endpoint: str = HTTP_API,
    ) -> None:
        if endpoint not in (HTTP_API, FUNCTION_URL):
            raise ValueError(f"endpoint must be {HTTP_API} or {FUNCTION_URL}")
        self.endpoint = endpoint
        if max_payload_bytes is None:
            max_payload_bytes = MAX_PAYLOAD_BYTES if endpoint == HTTP_API else FUNCTION_URL_MAX_PAYLOAD_BYTES
        self.handler = handler
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.max_payload_bytes = max_payload_bytes
        self.force_base64 = force_base64
        self.invocations = 0
        self.responses: list[tuple[int, str]] = []  # (status, requestId) per routed request
        self._invoke_lock = threading.Lock()
        super().__init__()
        self._bind_to = (host, port)
        self.bind()

    def _make_server(self) -> ThreadingHTTPServer:
        return ThreadingHTTPServer(self._bind_to, self._make_request_handler())

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{ROUTE_PATH}"

    def invoke(self, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Invoke the handler with ``event`` and map its result; a function error (it raised or
        timed out) is 500 from the HTTP API, 502 from a function URL."""
        context = make_context(self.function_name, timeout_seconds=self.timeout_seconds)
        failed = (
            500 if self.endpoint == HTTP_API else 502,
            [("content-type", "application/json")],
            b'{"message":"Internal Server Error"}',
        )
        with self._invoke_lock:
            self.invocations += 1
            try:
                result = self.handler(event, context)
            except Exception:
                LOG.exception("%s raised; answering %d like %s", self.function_name, failed[0], self.endpoint)
                return failed
        if context.timed_out:
            # Lambda reports "Task timed out" as a function error.
            LOG.error("%s ran past its %.0f s timeout", self.function_name, self.timeout_seconds)
            return failed
        return proxy_response(result)

    def _make_request_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, a kept-alive connection waits
            # for the peer's delayed ACK (~40 ms) on every response.
            disable_nagle_algorithm = True
            server_version = "local-apigw"

            def log_message(self, format: str, *args: Any) -> None:
                LOG.debug("%s " + format, self.address_string(), *args)

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, req_id: str) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(name, value)
                self.send_header("apigw-requestid", req_id)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, message: str, req_id: str) -> None:
                body = json.dumps({"message": message}).encode()
                self._send(status, [("content-type", "application/json")], body, req_id)

            def _handle(self) -> None:
                req_id = base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")
                split = urlsplit(self.path)
                length_header = self.headers.get("content-length")
                try:
                    length = int(length_header) if length_header else 0
                except ValueError:
                    self.close_connection = True
                    self._json(400, "Bad Request", req_id)
                    return
                if length > gateway.max_payload_bytes:
                    self.close_connection = True  # don't read the oversized body
                    self._json(413, "Request Entity Too Large", req_id)
                    return
                body = self.rfile.read(length) if length else b""
                routed = gateway.endpoint == FUNCTION_URL or (self.command, split.path) == (
                    ROUTE_METHOD,
                    ROUTE_PATH,
                )
                if not routed:
                    self._json(404, "Not Found", req_id)
                    return
                build = build_http_api_event if gateway.endpoint == HTTP_API else build_function_url_event
                event = build(
                    body=body,
                    headers=list(self.headers.items()),
                    method=self.command,
                    path=split.path,
                    raw_query_string=split.query,
                    source_ip=self.client_address[0],
                    request_id=req_id,
                    domain_name=self.headers.get("host", "localhost").split(":", 1)[0],
                    force_base64=gateway.force_base64,
                )
                status, headers, resp_body = gateway.invoke(event)
                gateway.responses.append((status, req_id))
                self._send(status, headers, resp_body, req_id)

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle
            do_PATCH = _handle
            do_DELETE = _handle
            do_HEAD = _handle
            do_OPTIONS = _handle

        return RequestHandler
