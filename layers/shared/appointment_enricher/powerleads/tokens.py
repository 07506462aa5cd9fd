"""Where PowerLeads access tokens come from.

- ``POWERLEADS_TOKEN``: one plain token (local runs).
- ``POWERLEADS_TOKEN_SECRET_ID``: a Secrets Manager secret read through Powertools parameters
  (cached for ``max_age`` seconds, re-read at once after a 401/403). Its value is a token, or
  JSON ``{"default": "...", "locations": {"<locationId>": "<token>"}}``, or an OAuth app
  (``{"oauth": {...}}``, handled by ``oauth.OAuthTokens``).

This module sits below ``oauth``: the ``TokenSource`` protocol, ``TokenUnavailable``, document
sniffing and token validation live here, and ``oauth`` imports them (never the reverse).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import EnricherError

SecretFetcher = Callable[[str, bool], str]

# What an HTTP header value can carry without ``requests`` raising ``InvalidHeader`` (whose message
# repeats the whole header, token included, into logs and X-Ray): printable ASCII, no whitespace.
_TOKEN = re.compile(r"[!-~]{1,8192}")


class TokenSource(Protocol):
    def token_for(self, location_id: str, *, deadline: float | None = None) -> str:
        """A token for ``location_id``; ``deadline`` is a ``time.monotonic()`` value not to wait past."""
        ...

    def invalidate(self, location_id: str) -> None: ...


class TokenUnavailable(EnricherError, RuntimeError):
    """No token for this location: retryable (someone may add it), and alarmed."""

    error_type = "TokenUnavailable"
    retryable = True


def checked_token(value: object, where: str) -> str:
    """``value`` if it can go into an ``Authorization`` header; otherwise refuse without echoing it."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    raise TokenUnavailable(
        f"{where} holds a token that is empty or has characters an HTTP header cannot carry"
        " (whitespace, control or non-ASCII characters)"
    )


def is_oauth_document(doc: object) -> bool:
    """True for a secret document holding an OAuth app: ``{"oauth": {"clientId": ..., ...}}``."""
    if not isinstance(doc, Mapping):
        return False
    oauth = doc.get("oauth")
    return isinstance(oauth, Mapping) and all(
        isinstance(oauth.get(k), str) and oauth.get(k) for k in ("clientId", "clientSecret", "refreshToken")
    )


class StaticTokens:
    """A single token for every location."""

    def __init__(self, token: str) -> None:
        self._token = checked_token(token, "POWERLEADS_TOKEN")

    def token_for(self, location_id: str, *, deadline: float | None = None) -> str:
        return self._token

    def invalidate(self, location_id: str) -> None:
        """A static token cannot be re-read."""

    def __repr__(self) -> str:
        return "StaticTokens(***)"


def powertools_secret_fetcher(max_age: int = 300, client: Any = None) -> SecretFetcher:
    """Read a secret string through a Powertools ``SecretsProvider`` (cached for ``max_age``).

    Pass the container's boto3 client: without one Powertools builds a new boto3 Session, which
    re-reads botocore's data files (about 100 ms of cold start, measured in BENCHMARKS.md).
    """
    from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

    provider = SecretsProvider(boto3_client=client)

    def fetch(secret_id: str, force: bool) -> str:
        value = provider.get(secret_id, max_age=max_age, force_fetch=force)
        if isinstance(value, bytes):
            return value.decode()
        return str(value)

    return fetch


class SecretTokens:
    """Tokens held in one Secrets Manager secret: a plain token, a per-location map, or an OAuth app.

    An OAuth document (``{"oauth": {...}}``) is handed to the source ``oauth_factory`` builds
    (``oauth.OAuthTokens``), which refreshes access tokens and writes rotated refresh tokens back.
    Every token is validated when read, so a bad one fails here with a message that omits it.
    """

    def __init__(
        self,
        secret_id: str,
        fetch: SecretFetcher,
        oauth_factory: Callable[[], TokenSource] | None = None,
    ) -> None:
        self._secret_id = secret_id
        self._fetch = fetch
        self._force = False
        self._lock = threading.Lock()
        # One read of the secret at a time: a token lookup that arrives while ``prefetch`` (or
        # another worker) is reading waits for that read and takes it from the cache.
        self._reading = threading.Lock()
        self._oauth_factory = oauth_factory
        self._oauth: TokenSource | None = None

    def _document(self) -> Any:
        with self._reading:
            with self._lock:
                force, self._force = self._force, False
            raw = self._fetch(self._secret_id, force)
        text = raw.strip()  # a plain token saved with a trailing newline: the newline is not the token
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError:
                raise TokenUnavailable(f"secret {self._secret_id} holds invalid JSON") from None
        return text

    def token_for(self, location_id: str, *, deadline: float | None = None) -> str:
        if self._oauth is not None:
            return self._oauth.token_for(location_id, deadline=deadline)
        document = self._document()
        if isinstance(document, dict) and "oauth" in document:
            return self._oauth_source(document).token_for(location_id, deadline=deadline)
        where = f"secret {self._secret_id}"
        if isinstance(document, str):
            return checked_token(document, where)
        if not isinstance(document, dict):
            raise TokenUnavailable(f"{where} is neither a token nor a JSON object")
        locations = document.get("locations") or {}
        token = locations.get(location_id) if isinstance(locations, dict) else None
        token = token or document.get("default")
        if token is None or token == "":
            raise TokenUnavailable(f"no token for location {location_id} in {where}")
        return checked_token(token, where)

    def prefetch(self) -> None:
        """Read the secret now, into the fetcher's cache: the enricher starts this beside a batch's
        ledger read, so a cold container's first fetch does not wait for Secrets Manager after it
        (BENCHMARKS.md). A failure is left for ``token_for``, which reports it where it matters."""
        if self._oauth is not None:
            return  # an OAuth app: its tokens are per location, read by the fetches themselves
        # token_for reads it again and raises with context.
        with contextlib.suppress(Exception):
            self._document()

    def invalidate(self, location_id: str) -> None:
        if self._oauth is not None:
            self._oauth.invalidate(location_id)
            return
        with self._lock:
            self._force = True

    def _oauth_source(self, document: dict[str, Any]) -> TokenSource:
        if not is_oauth_document(document) or self._oauth_factory is None:
            raise TokenUnavailable(
                f"secret {self._secret_id} holds an incomplete OAuth app"
                " (clientId, clientSecret, refreshToken are required)"
            )
        with self._lock:
            if self._oauth is None:
                self._oauth = self._oauth_factory()
            return self._oauth

    def __repr__(self) -> str:
        return f"SecretTokens({self._secret_id!r})"
