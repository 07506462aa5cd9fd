"""OAuth access tokens for a PowerLeads marketplace app, kept in one Secrets Manager secret.

The secret holds JSON::

    {"oauth": {"clientId": "...", "clientSecret": "...", "refreshToken": "...",
               "accessToken": "..."?, "expiresAt": 1767225600?,   # epoch seconds
               "userType": "Location" | "Company", "companyId": "..."?, "locationId": "..."?}}

Access tokens are refreshed ``margin`` seconds before they expire through
``POST {base}/oauth/token`` (form-encoded, ``grant_type=refresh_token``). HighLevel refresh tokens
are single use: the response carries a new one, which must be written back to the secret, and
spending the old one twice (two containers refreshing at once) fails the second refresh with
``invalid_grant`` and, on some providers, revokes the whole grant. An agency (``Company``) token
is exchanged for per-location tokens through ``POST {base}/oauth/locationToken``; those are
derived, never stored, and cached in memory per location until shortly before they expire.

Concurrency: a refresh lease won by compare-and-swap on the ``AWSCURRENT`` label
--------------------------------------------------------------------------------
Every container reads the ``AWSCURRENT`` version of the secret (its ``VersionId`` V0 and JSON).
When the access token is missing or expiring, and no live lease is recorded in the document,
the container *takes the lease* before it spends the refresh token:

1. ``PutSecretValue`` a new version V1 = the same document plus
   ``oauth.refreshLease = {"owner": <random id>, "until": now + lease_seconds}``, staged only with
   the custom label :data:`LEASE_STAGE` (so ``AWSCURRENT`` does not move);
2. ``UpdateSecretVersionStage(VersionStage="AWSCURRENT", MoveToVersionId=V1,
   RemoveFromVersionId=V0)``. Secrets Manager rejects this if ``AWSCURRENT`` is no longer on V0
   (documented: "If the label is attached and you either do not specify this parameter, or the
   version ID does not match, then the operation fails"). It is a compare-and-swap on the label:
   of any number of containers that read V0, exactly one moves ``AWSCURRENT`` off it.

Only the winner calls ``/oauth/token``. It then swaps V1 -> V2 (new access token, the rotated
refresh token, ``expiresAt``, no lease) the same way. Losers re-read the secret and poll until
the winner's V2 appears, then use its access token without any refresh of their own.

Why this is safe:
* A refresh token is spent only by the holder of a lease version that was, at the moment of the
  swap, the successor of the version the holder read. Two containers cannot both move
  ``AWSCURRENT`` off the same version, so for each refresh token at most one container is allowed
  to spend it.
* The holder spends the token only while at least ``lease_seconds - spend_budget`` of its lease
  remains, and the HTTP call is bounded by ``timeout``; the lease is taken over by others only after
  it expired, so a slow holder cannot overlap a successor unless it stalls longer than the lease
  (``lease_seconds`` is 60 s against a 10 s read timeout).
* A holder that fails (network error, 5xx, ``invalid_grant``) releases the lease by a further
  swap, so others retry without waiting. One that dies mid-refresh blocks others only until the
  lease expires.
* After winning a swap the container re-reads the secret when the call raised (a retried request
  whose first attempt committed), so an ambiguous result is decided by what ``AWSCURRENT`` is.
* The same swap works identically on AWS and on moto server (verified by experiment: the loser
  gets ``InvalidParameterException``). Reads name ``VersionStage="AWSCURRENT"``: moto's default
  read ignores label moves made by ``UpdateSecretVersionStage`` (AWS's does not).
* A fixed custom label is used because AWS allows only 20 staging labels across all versions of
  a secret; versions left without a label are deprecated and removed by Secrets Manager itself. A
  container checks for a live lease before writing, so a refresh normally creates two versions
  (plus one per container that lost a simultaneous swap).

Within one container, a lock makes the refresh single-flight across the enricher's threads.
Tokens never appear in logs, exception messages or ``repr``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from .tokens import TokenUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
LOCATION_TOKEN_PATH = "/oauth/locationToken"  # noqa: S105 - a URL path, not a secret
# The Version header HighLevel documents for /oauth/locationToken.
LOCATION_TOKEN_API_VERSION = "2021-07-28"  # noqa: S105 - an API version, not a secret
LEASE_STAGE = "PLENRICH_REFRESH"
USER_TYPES = ("Location", "Company")


class OAuthError(TokenUnavailable):
    """No usable OAuth token right now (retryable for the enricher, and alarmed)."""


def is_oauth_document(doc: object) -> bool:
    """True for a secret document holding an OAuth app: ``{"oauth": {"clientId": ..., ...}}``."""
    if not isinstance(doc, Mapping):
        return False
    oauth = doc.get("oauth")
    return isinstance(oauth, Mapping) and all(
        isinstance(oauth.get(k), str) and oauth.get(k) for k in ("clientId", "clientSecret", "refreshToken")
    )


@dataclass(frozen=True)
class _Snapshot:
    """One version of the secret."""

    version_id: str
    document: dict[str, Any]

    @property
    def oauth(self) -> dict[str, Any]:
        oauth = self.document.get("oauth")
        return oauth if isinstance(oauth, dict) else {}


@dataclass(frozen=True)
class _Token:
    value: str = ""
    expires_at: float = 0.0
    issued_at: float = 0.0

    def usable(self, now: float, margin: float) -> bool:
        if not self.value:
            return False
        lifetime = self.expires_at - self.issued_at if self.issued_at else 0.0
        effective = min(margin, lifetime / 2) if lifetime > 0 else margin
        return self.expires_at - effective > now


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


class OAuthTokens:
    """A ``TokenSource`` (``token_for`` / ``invalidate``) for an OAuth app held in a secret."""

    def __init__(
        self,
        secret_id: str,
        secrets_client: SecretsManagerClient,
        session: requests.Session,
        base_url: str = DEFAULT_BASE_URL,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 300.0,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.25,
        timeout: tuple[float, float] = (3.05, 10.0),
        forced_refresh_interval: float = 300.0,
    ) -> None:
        self.secret_id = secret_id
        self.secrets = secrets_client
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.sleep = sleep
        self.margin = margin
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.forced_refresh_interval = forced_refresh_interval
        self.owner = uuid.uuid4().hex  # this container, in lease records
        self.refreshes = 0  # refreshes this instance performed (tests, metrics)
        self._token = _Token()
        self._user_type = ""
        self._company_id: str | None = None
        self._location_id: str | None = None
        self._rejected: set[str] = set()
        self._last_forced = float("-inf")
        self._locations: dict[str, _Token] = {}
        self._location_locks: dict[str, threading.Lock] = {}
        self._state = threading.Lock()
        self._refresh = threading.Lock()

    @classmethod
    def from_secret_id(
        cls,
        secret_id: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        secrets_client: SecretsManagerClient | None = None,
        session: requests.Session | None = None,
        **options: Any,
    ) -> OAuthTokens:
        """Production wiring: a boto3 client (honours ``AWS_ENDPOINT_URL``) and a pooled session."""
        if secrets_client is None:
            import boto3  # noqa: PLC0415 - imported where used so domain imports stay cheap

            secrets_client = boto3.client("secretsmanager")
        return cls(secret_id, secrets_client, session or requests.Session(), base_url, **options)

    def __repr__(self) -> str:
        return f"OAuthTokens({self.secret_id!r})"

    # ----- TokenSource ---------------------------------------------------------------------

    def token_for(self, location_id: str) -> str:
        """An access token valid for ``location_id`` (refreshing or exchanging as needed)."""
        access = self._access_token()
        with self._state:
            user_type, company_id, bound = self._user_type, self._company_id, self._location_id
        if user_type == "Company":
            if not company_id:
                raise OAuthError(f"secret {self.secret_id}: a Company app needs oauth.companyId")
            return self._location_token(location_id, company_id, access)
        if bound and bound != location_id:
            # Refusing here matters: a 403 for a foreign location would otherwise trigger a forced
            # refresh for every webhook from it.
            raise OAuthError(f"secret {self.secret_id} holds a token for another location, not {location_id}")
        return access

    def invalidate(self, location_id: str) -> None:
        """Upstream said 401/403: drop what we would have used for ``location_id``."""
        with self._state:
            if self._user_type == "Company":
                self._locations.pop(location_id, None)
            else:
                self._reject(self._token.value)

    # ----- access token (the app's own token) -----------------------------------------------

    def _reject(self, token: str) -> None:
        # Caller holds self._state.
        if token:
            self._rejected.add(token)
        if self._token.value == token:
            self._token = _Token()

    def _access_token(self) -> str:
        with self._state:
            cached = self._token
        if cached.usable(self.clock(), self.margin):
            return cached.value
        with self._refresh:  # single flight across this container's threads
            with self._state:
                cached = self._token
            if cached.usable(self.clock(), self.margin):
                return cached.value
            return self._obtain()

    def _adopt(self, snapshot: _Snapshot) -> str:
        oauth = snapshot.oauth
        token = _stored_token(oauth)
        user_type = oauth.get("userType") or "Location"
        if user_type not in USER_TYPES:
            raise OAuthError(f"secret {self.secret_id}: oauth.userType must be Location or Company")
        with self._state:
            self._token = token
            self._user_type = str(user_type)
            self._company_id = str(oauth["companyId"]) if oauth.get("companyId") else None
            self._location_id = str(oauth["locationId"]) if oauth.get("locationId") else None
        return token.value

    def _needs_refresh(self, snapshot: _Snapshot, now: float) -> bool:
        oauth = snapshot.oauth
        token = _stored_token(oauth)
        if not token.usable(now, self.margin):
            return True
        with self._state:
            rejected = token.value in self._rejected
        return rejected and now - self._last_forced >= self.forced_refresh_interval

    def _obtain(self) -> str:
        """Read the secret; use its token, wait for another container's refresh, or refresh."""
        give_up = self.clock() + self.lease_seconds + 5 * self.poll_seconds
        while True:
            snapshot = self._read()
            if not is_oauth_document(snapshot.document):
                raise OAuthError(f"secret {self.secret_id} holds no oauth clientId/clientSecret/refreshToken")
            now = self.clock()
            if not self._needs_refresh(snapshot, now):
                return self._adopt(snapshot)
            lease = snapshot.oauth.get("refreshLease")
            if isinstance(lease, dict) and _number(lease.get("until")) > now:
                if now >= give_up:
                    raise OAuthError(f"secret {self.secret_id}: another container is still refreshing")
                self.sleep(self.poll_seconds)
                continue
            leased = self._take_lease(snapshot, now)
            if leased is None:
                continue  # another container won the swap: re-read and use (or wait for) its token
            return self._spend(leased)

    def _take_lease(self, snapshot: _Snapshot, now: float) -> _Snapshot | None:
        oauth = {**snapshot.oauth, "refreshLease": {"owner": self.owner, "until": now + self.lease_seconds}}
        return self._swap(snapshot, {**snapshot.document, "oauth": oauth})

    def _release(self, leased: _Snapshot) -> None:
        oauth = {k: v for k, v in leased.oauth.items() if k != "refreshLease"}
        try:
            self._swap(leased, {**leased.document, "oauth": oauth})
        except Exception:  # noqa: BLE001 - the lease then simply expires
            logger.warning("could not release the OAuth refresh lease", extra={"secretId": self.secret_id})

    def _spend(self, leased: _Snapshot) -> str:
        """We hold the lease: spend the refresh token once and write the rotated one back."""
        oauth = leased.oauth
        user_type = str(oauth.get("userType") or "Location")
        form = {
            "client_id": str(oauth["clientId"]),
            "client_secret": str(oauth["clientSecret"]),
            "grant_type": "refresh_token",
            "refresh_token": str(oauth["refreshToken"]),
            "user_type": user_type,
        }
        try:
            response = self.session.post(
                self.base_url + TOKEN_PATH,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            self._release(leased)
            raise OAuthError(f"token refresh failed: {type(exc).__name__}") from None
        payload = _json(response)
        access, rotated = payload.get("access_token"), payload.get("refresh_token")
        if response.status_code != 200 or not isinstance(access, str) or not access:
            self._release(leased)
            reason = payload.get("error") or f"HTTP {response.status_code}"
            hint = ": re-authorise the app" if reason in ("invalid_grant", "invalid_client") else ""
            logger.error(
                "OAuth token refresh rejected",
                extra={"secretId": self.secret_id, "status": response.status_code, "error": str(reason)[:64]},
            )
            raise OAuthError(f"token refresh failed ({str(reason)[:64]}){hint}")
        now = self.clock()
        expires_in = _number(payload.get("expires_in")) or 86_399.0
        fresh = {k: v for k, v in oauth.items() if k != "refreshLease"}
        fresh.update(
            {
                "accessToken": access,
                "refreshToken": rotated if isinstance(rotated, str) and rotated else oauth["refreshToken"],
                "expiresAt": int(now + expires_in),
                "issuedAt": int(now),
            }
        )
        for key in ("companyId", "locationId"):
            if isinstance(payload.get(key), str) and payload[key]:
                fresh.setdefault(key, payload[key])
        with self._state:
            if oauth.get("accessToken") in self._rejected:
                self._last_forced = now
            self._rejected.clear()
            self.refreshes += 1
        written = self._write_back(leased, {**leased.document, "oauth": fresh})
        logger.info("OAuth access token refreshed", extra={"secretId": self.secret_id, "saved": written})
        return self._adopt(_Snapshot(leased.version_id, {**leased.document, "oauth": fresh}))

    def _write_back(self, leased: _Snapshot, document: dict[str, Any]) -> bool:
        """Swap in the rotated tokens; if something else moved ``AWSCURRENT`` meanwhile, retry on
        top of it as long as it still holds the refresh token we just spent (ours is then the only
        valid one)."""
        spent = leased.oauth.get("refreshToken")
        base: _Snapshot | None = leased
        for _ in range(5):
            assert base is not None
            try:
                if self._swap(base, document) is not None:
                    return True
            except Exception as exc:  # noqa: BLE001 - logged; the tokens still serve this container
                logger.error("could not save rotated OAuth tokens", extra={"error": type(exc).__name__})
                return False
            base = self._read()
            if base.oauth.get("refreshToken") != spent:
                return False  # a newer grant was stored (e.g. re-authorised): leave it be
        logger.error("could not save rotated OAuth tokens after retries", extra={"secretId": self.secret_id})
        return False

    # ----- location tokens (agency apps) -----------------------------------------------------

    def _location_token(self, location_id: str, company_id: str, access: str) -> str:
        with self._state:
            cached = self._locations.get(location_id)
            lock = self._location_locks.setdefault(location_id, threading.Lock())
        if cached and cached.usable(self.clock(), self.margin):
            return cached.value
        with lock:
            with self._state:
                cached = self._locations.get(location_id)
            if cached and cached.usable(self.clock(), self.margin):
                return cached.value
            for attempt in range(2):
                response = self._exchange(location_id, company_id, access)
                if response.status_code == 401 and attempt == 0:
                    with self._state:
                        self._reject(access)  # the agency token itself was refused
                    access = self._access_token()
                    continue
                break
            payload = _json(response)
            token = payload.get("access_token")
            if response.status_code != 200 or not isinstance(token, str) or not token:
                raise OAuthError(f"location token for {location_id}: HTTP {response.status_code}")
            now = self.clock()
            entry = _Token(token, now + (_number(payload.get("expires_in")) or 86_399.0), now)
            with self._state:
                self._locations[location_id] = entry
            return token

    def _exchange(self, location_id: str, company_id: str, access: str) -> requests.Response:
        try:
            return self.session.post(
                self.base_url + LOCATION_TOKEN_PATH,
                data={"companyId": company_id, "locationId": location_id},
                headers={
                    "Authorization": f"Bearer {access}",
                    "Version": LOCATION_TOKEN_API_VERSION,
                    "Accept": "application/json",
                },
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise OAuthError(f"location token for {location_id}: {type(exc).__name__}") from None

    # ----- Secrets Manager ------------------------------------------------------------------

    def _read(self) -> _Snapshot:
        # AWSCURRENT is AWS's default, but named explicitly: moto server's default read keeps
        # returning the version made by PutSecretValue-without-stages and ignores later label moves.
        response = self.secrets.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")
        text = response.get("SecretString") or ""
        try:
            document = json.loads(text)
        except ValueError:
            raise OAuthError(f"secret {self.secret_id} holds invalid JSON") from None
        if not isinstance(document, dict):
            raise OAuthError(f"secret {self.secret_id} is not a JSON object")
        return _Snapshot(response["VersionId"], document)

    def _swap(self, expected: _Snapshot, document: dict[str, Any]) -> _Snapshot | None:
        """Compare-and-swap: make ``document`` current iff ``expected`` still is. None if we lost."""
        put = self.secrets.put_secret_value(
            SecretId=self.secret_id,
            ClientRequestToken=str(uuid.uuid4()),
            SecretString=json.dumps(document, separators=(",", ":")),
            VersionStages=[LEASE_STAGE],
        )
        version = put["VersionId"]
        try:
            self.secrets.update_secret_version_stage(
                SecretId=self.secret_id,
                VersionStage="AWSCURRENT",
                MoveToVersionId=version,
                RemoveFromVersionId=expected.version_id,
            )
        except Exception:
            # Decided by what is current now: ours (an earlier attempt of a retried call
            # committed), someone else's (we lost), or still the expected one (the call failed
            # for another reason: not a lost race, so surface it rather than loop).
            current = self._read()
            if current.version_id == version:
                return current
            if current.version_id == expected.version_id:
                raise
            return None
        return _Snapshot(version, document)


def _stored_token(oauth: Mapping[str, Any]) -> _Token:
    return _Token(
        str(oauth.get("accessToken") or ""), _number(oauth.get("expiresAt")), _number(oauth.get("issuedAt"))
    )


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
