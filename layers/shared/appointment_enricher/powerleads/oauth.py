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

Failure, deadlines and storms:
* The rotated refresh token is kept in memory when it cannot be saved, and the save is retried
  with backoff on later calls (``secret_store.SecretStore``); a failed save is counted as
  ``OAuthWriteBackFailed`` and alarmed.
* Waiting on another container's lease, and starting a refresh, respect the caller's batch
  deadline (a ``time.monotonic()`` value): past it the lookup fails retryably.
* A 401/403 forces a refresh at most once per ``forced_refresh_interval`` per container *and*
  not at all when the secret's ``issuedAt`` says any container refreshed within that interval.

Parts: ``secret_store.SecretStore`` (compare-and-swap, lease, saving rotations),
``LocationTokens`` (per-location tokens of an agency app) and ``OAuthTokens`` (the front).
Within one container, a lock makes the refresh single-flight across the enricher's threads.
Tokens never appear in logs, exception messages or ``repr``; every token is validated when read.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from ..clocks import Epoch, Monotonic
from ..wire import DEFAULT_API_BASE_URL
from .client import DEFAULT_TIMEOUT
from .secret_store import LEASE_STAGE, OAuthError, SecretStore, Snapshot
from .tokens import checked_token, is_oauth_document

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["LEASE_STAGE", "LocationTokens", "OAuthError", "OAuthTokens", "is_oauth_document"]

logger = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
LOCATION_TOKEN_PATH = "/oauth/locationToken"  # noqa: S105 - a URL path, not a secret
# The Version header HighLevel documents for /oauth/locationToken.
LOCATION_TOKEN_API_VERSION = "2021-07-28"  # noqa: S105 - an API version, not a secret
USER_TYPES = ("Location", "Company")


@dataclass(frozen=True)
class _Token:
    value: str = field(default="", repr=False)
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


def _time_left(deadline: float | None, monotonic: Callable[[], float]) -> float | None:
    return None if deadline is None else deadline - monotonic()


class LocationTokens:
    """Per-location tokens an agency (Company) token yields: derived, never stored, cached in
    memory until shortly before they expire, one exchange per location at a time."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        *,
        timeout: tuple[float, float],
        epoch: Epoch,
        monotonic: Monotonic,
        margin: float,
    ) -> None:
        self.base_url = base_url
        self.session = session
        self.timeout = timeout
        self.epoch = epoch
        self.monotonic = monotonic
        self.margin = margin
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._state = threading.Lock()

    def drop(self, location_id: str) -> None:
        with self._state:
            self._tokens.pop(location_id, None)

    def _cached(self, location_id: str) -> str | None:
        with self._state:
            cached = self._tokens.get(location_id)
        return cached.value if cached and cached.usable(self.epoch(), self.margin) else None

    def get(
        self,
        location_id: str,
        company_id: str,
        agency: Callable[[], str],
        refused: Callable[[str], None],
        deadline: float | None,
    ) -> str:
        """A token for ``location_id``; ``agency()`` gives the agency token, ``refused(t)`` reports
        that upstream refused agency token ``t`` (one retry with a fresh one)."""
        cached = self._cached(location_id)
        if cached:
            return cached
        with self._state:
            lock = self._locks.setdefault(location_id, threading.Lock())
        with lock:
            cached = self._cached(location_id)
            if cached:
                return cached
            access = agency()
            response = self._exchange(location_id, company_id, access, deadline)
            if response.status_code == 401:
                refused(access)
                response = self._exchange(location_id, company_id, agency(), deadline)
            payload = _json(response)
            if response.status_code != 200:
                raise OAuthError(f"location token for {location_id}: HTTP {response.status_code}")
            where = f"the location token response for {location_id}"
            token = checked_token(payload.get("access_token"), where)
            now = self.epoch()
            entry = _Token(token, now + (_number(payload.get("expires_in")) or 86_399.0), now)
            with self._state:
                self._tokens[location_id] = entry
            return token

    def _exchange(
        self, location_id: str, company_id: str, access: str, deadline: float | None
    ) -> requests.Response:
        left = _time_left(deadline, self.monotonic)
        if left is not None and left <= 0:
            raise OAuthError(f"location token for {location_id}: batch deadline reached")
        # The exchange spends nothing, so unlike a refresh it may be cut short by the deadline.
        timeout = self.timeout if left is None else (min(self.timeout[0], left), min(self.timeout[1], left))
        try:
            return self.session.post(
                self.base_url + LOCATION_TOKEN_PATH,
                data={"companyId": company_id, "locationId": location_id},
                headers={
                    "Authorization": f"Bearer {access}",
                    "Version": LOCATION_TOKEN_API_VERSION,
                    "Accept": "application/json",
                },
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise OAuthError(f"location token for {location_id}: {type(exc).__name__}") from None


class OAuthTokens:
    """A ``TokenSource`` (``token_for`` / ``invalidate``) for an OAuth app held in a secret."""

    def __init__(
        self,
        secret_id: str,
        secrets_client: SecretsManagerClient,
        session: requests.Session,
        base_url: str = DEFAULT_API_BASE_URL,
        *,
        epoch: Epoch = time.time,
        monotonic: Monotonic = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 300.0,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.25,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        forced_refresh_interval: float = 300.0,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.secret_id = secret_id
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.epoch = epoch  # lease and expiry times are shared with other containers through the secret
        self.monotonic = monotonic  # the enricher's deadline clock
        self.sleep = sleep
        self.margin = margin
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.forced_refresh_interval = forced_refresh_interval
        self.store = SecretStore(secret_id, secrets_client, monotonic=monotonic, count=count)
        self.locations = LocationTokens(
            self.base_url, session, timeout=timeout, epoch=epoch, monotonic=monotonic, margin=margin
        )
        self.owner = uuid.uuid4().hex  # this container, in lease records
        self.refreshes = 0  # refreshes this instance performed (tests, metrics)
        self._token = _Token()
        self._user_type = ""
        self._company_id: str | None = None
        self._location_id: str | None = None
        self._rejected: set[str] = set()
        self._last_forced = float("-inf")
        self._state = threading.Lock()
        self._refresh = threading.Lock()

    def __repr__(self) -> str:
        return f"OAuthTokens({self.secret_id!r})"

    # ----- TokenSource ---------------------------------------------------------------------

    def token_for(self, location_id: str, *, deadline: float | None = None) -> str:
        """An access token valid for ``location_id`` (refreshing or exchanging as needed)."""
        self.store.flush()  # an unsaved rotation is retried first (no-op when none is pending)
        access = self._access_token(deadline)
        with self._state:
            user_type, company_id, bound = self._user_type, self._company_id, self._location_id
        if user_type == "Company":
            if not company_id:
                raise OAuthError(f"secret {self.secret_id}: a Company app needs oauth.companyId")
            first = iter([access])
            return self.locations.get(
                location_id,
                company_id,
                lambda: next(first, None) or self._access_token(deadline),
                self._refused,
                deadline,
            )
        if bound and bound != location_id:
            # Refusing here matters: a 403 for a foreign location would otherwise trigger a forced
            # refresh for every webhook from it.
            raise OAuthError(f"secret {self.secret_id} holds a token for another location, not {location_id}")
        return access

    def invalidate(self, location_id: str) -> None:
        """Upstream said 401/403: drop what we would have used for ``location_id``."""
        with self._state:
            company = self._user_type == "Company"
            if not company:
                self._reject(self._token.value)
        if company:
            self.locations.drop(location_id)

    # ----- access token (the app's own token) -----------------------------------------------

    def _refused(self, token: str) -> None:
        with self._state:
            self._reject(token)

    def _reject(self, token: str) -> None:
        # Caller holds self._state.
        if token:
            self._rejected.add(token)
        if self._token.value == token:
            self._token = _Token()

    def _access_token(self, deadline: float | None) -> str:
        with self._state:
            cached = self._token
        if cached.usable(self.epoch(), self.margin):
            return cached.value
        with self._refresh:  # single flight across this container's threads
            with self._state:
                cached = self._token
            if cached.usable(self.epoch(), self.margin):
                return cached.value
            return self._obtain(deadline)

    def _adopt(self, oauth: Mapping[str, Any]) -> str:
        token = _stored_token(oauth)
        checked_token(token.value, f"secret {self.secret_id} (oauth.accessToken)")
        user_type = oauth.get("userType") or "Location"
        if user_type not in USER_TYPES:
            raise OAuthError(f"secret {self.secret_id}: oauth.userType must be Location or Company")
        with self._state:
            self._token = token
            self._user_type = str(user_type)
            self._company_id = str(oauth["companyId"]) if oauth.get("companyId") else None
            self._location_id = str(oauth["locationId"]) if oauth.get("locationId") else None
        return token.value

    def _needs_refresh(self, oauth: Mapping[str, Any], now: float) -> bool:
        token = _stored_token(oauth)
        if not token.usable(now, self.margin):
            return True
        with self._state:
            if token.value not in self._rejected or now - self._last_forced < self.forced_refresh_interval:
                return False
        # Shared across containers: no forced refresh if any container refreshed recently.
        issued = _number(oauth.get("issuedAt"))
        return not issued or now - issued >= self.forced_refresh_interval

    def _obtain(self, deadline: float | None) -> str:
        """Read the secret; use its token, wait for another container's refresh, or refresh."""
        give_up = self.monotonic() + self.lease_seconds + 5 * self.poll_seconds
        if deadline is not None:
            give_up = min(give_up, deadline)
        while True:
            snapshot = self.store.read()
            if not is_oauth_document(snapshot.document):
                raise OAuthError(f"secret {self.secret_id} holds no oauth clientId/clientSecret/refreshToken")
            now = self.epoch()
            if not self._needs_refresh(snapshot.oauth, now):
                return self._adopt(snapshot.oauth)
            if self.store.unsaved:
                raise OAuthError(f"secret {self.secret_id}: the last rotation is not saved yet (retrying)")
            lease = snapshot.oauth.get("refreshLease")
            if isinstance(lease, dict) and _number(lease.get("until")) > now:
                if self.monotonic() + self.poll_seconds > give_up:
                    why = "batch deadline" if deadline is not None and give_up == deadline else "lease time"
                    raise OAuthError(
                        f"secret {self.secret_id}: another container is still refreshing ({why} reached)"
                    )
                self.sleep(self.poll_seconds)
                continue
            left = _time_left(deadline, self.monotonic)
            if left is not None and left < sum(self.timeout):
                # Spending the refresh token and then losing the answer to a cut-short call would
                # lose the grant: refresh only with time for the full call.
                raise OAuthError(f"secret {self.secret_id}: too little time left in this batch to refresh")
            try:
                leased = self.store.take_lease(snapshot, self.owner, now + self.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - e.g. AccessDenied: say what to check
                raise OAuthError(
                    f"secret {self.secret_id}: could not take the refresh lease ({type(exc).__name__});"
                    " the enricher must be allowed to write an OAuth app secret"
                    " (deploy with PowerLeadsTokenSecretIsOAuthApp=true)"
                ) from None
            if leased is None:
                continue  # another container won the swap: re-read and use (or wait for) its token
            return self._spend(leased)

    def _spend(self, leased: Snapshot) -> str:
        """We hold the lease: spend the refresh token once and save the rotated one."""
        try:
            fresh = refresh_grant(self.session, self.base_url, self.timeout, leased.oauth, self.epoch())
        except OAuthError:
            self.store.release(leased)
            raise
        with self._state:
            if leased.oauth.get("accessToken") in self._rejected:
                self._last_forced = float(fresh["issuedAt"])
            self._rejected.clear()
            self.refreshes += 1
        # Saved before the access token is checked: the refresh token is spent either way.
        saved = self.store.save(leased, leased.with_oauth(fresh))
        logger.info("OAuth access token refreshed", extra={"secretId": self.secret_id, "saved": saved})
        return self._adopt(fresh)


def refresh_grant(
    session: requests.Session,
    base_url: str,
    timeout: tuple[float, float],
    oauth: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:
    """``POST /oauth/token`` once with the stored refresh token; the oauth document to store next."""
    form = {
        "client_id": str(oauth["clientId"]),
        "client_secret": str(oauth["clientSecret"]),
        "grant_type": "refresh_token",
        "refresh_token": str(oauth["refreshToken"]),
        "user_type": str(oauth.get("userType") or "Location"),
    }
    try:
        response = session.post(
            base_url + TOKEN_PATH,
            data=form,
            headers={"Accept": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise OAuthError(f"token refresh failed: {type(exc).__name__}") from None
    payload = _json(response)
    access, rotated = payload.get("access_token"), payload.get("refresh_token")
    if response.status_code != 200 or not isinstance(access, str) or not access:
        reason = str(payload.get("error") or f"HTTP {response.status_code}")[:64]
        hint = ": re-authorise the app" if reason in ("invalid_grant", "invalid_client") else ""
        logger.error("OAuth token refresh rejected", extra={"status": response.status_code, "error": reason})
        raise OAuthError(f"token refresh failed ({reason}){hint}")
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
    return fresh


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
