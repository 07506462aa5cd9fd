"""Compare-and-swap on one Secrets Manager secret, the OAuth refresh lease, and saving rotated tokens.

A swap writes a new version staged only with :data:`LEASE_STAGE` (``AWSCURRENT`` does not move),
then moves ``AWSCURRENT`` onto it with ``RemoveFromVersionId`` = the version read. Secrets Manager
refuses the move when ``AWSCURRENT`` is no longer on that version, so of any number of writers
that read one version exactly one wins (see ``oauth`` for why the refresh protocol is safe).

Saving a rotated refresh token must not be given up: the old one is spent, so the new one held in
memory is then the only copy of the grant. A failed save is kept and retried with backoff on later
calls (``flush``), counted as ``OAuthWriteBackFailed`` (alarmed), until it lands or the secret was
re-authorised by someone else.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .tokens import TokenUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

LEASE_STAGE = "PLENRICH_REFRESH"
WRITE_BACK_FAILED = "OAuthWriteBackFailed"


class OAuthError(TokenUnavailable):
    """No usable OAuth token right now (retryable for the enricher, and alarmed)."""

    error_type = "OAuthError"


@dataclass(frozen=True)
class Snapshot:
    """One version of the secret (its document holds secrets: kept out of ``repr``)."""

    version_id: str
    document: dict[str, Any] = field(repr=False)

    @property
    def oauth(self) -> dict[str, Any]:
        oauth = self.document.get("oauth")
        return oauth if isinstance(oauth, dict) else {}

    def with_oauth(self, oauth: dict[str, Any]) -> dict[str, Any]:
        return {**self.document, "oauth": oauth}


@dataclass
class _PendingSave:
    base: Snapshot = field(repr=False)
    document: dict[str, Any] = field(repr=False)
    spent: str = field(repr=False)
    failures: int = 0
    next_try: float = 0.0


class SecretStore:
    """Reads and CAS-writes one secret; keeps an unsaved rotation until it is saved."""

    def __init__(
        self,
        secret_id: str,
        client: SecretsManagerClient,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        count: Callable[[str], None] | None = None,
        retry_base: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        self.secret_id = secret_id
        self.client = client
        self.monotonic = monotonic
        self.count = count or (lambda _name: None)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._pending: _PendingSave | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretStore({self.secret_id!r})"

    # ----- reads and swaps -------------------------------------------------------------------

    def read(self) -> Snapshot:
        # AWSCURRENT is AWS's default, but named explicitly: moto server's default read keeps
        # returning the version made by PutSecretValue-without-stages and ignores later label moves.
        response = self.client.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")
        text = response.get("SecretString") or ""
        try:
            document = json.loads(text)
        except ValueError:
            raise OAuthError(f"secret {self.secret_id} holds invalid JSON") from None
        if not isinstance(document, dict):
            raise OAuthError(f"secret {self.secret_id} is not a JSON object")
        return Snapshot(response["VersionId"], document)

    def swap(self, expected: Snapshot, document: dict[str, Any]) -> Snapshot | None:
        """Make ``document`` current iff ``expected`` still is. None if another writer won."""
        put = self.client.put_secret_value(
            SecretId=self.secret_id,
            ClientRequestToken=str(uuid.uuid4()),
            SecretString=json.dumps(document, separators=(",", ":")),
            VersionStages=[LEASE_STAGE],
        )
        version = put["VersionId"]
        try:
            self.client.update_secret_version_stage(
                SecretId=self.secret_id,
                VersionStage="AWSCURRENT",
                MoveToVersionId=version,
                RemoveFromVersionId=expected.version_id,
            )
        except Exception:
            # Decided by what is current now: ours (an earlier attempt of a retried call
            # committed), someone else's (we lost), or still the expected one (the call failed
            # for another reason: not a lost race, so surface it rather than loop).
            current = self.read()
            if current.version_id == version:
                return current
            if current.version_id == expected.version_id:
                raise
            return None
        return Snapshot(version, document)

    # ----- the refresh lease -----------------------------------------------------------------

    def take_lease(self, snapshot: Snapshot, owner: str, until: float) -> Snapshot | None:
        oauth = {**snapshot.oauth, "refreshLease": {"owner": owner, "until": until}}
        return self.swap(snapshot, snapshot.with_oauth(oauth))

    def release(self, leased: Snapshot) -> None:
        oauth = {k: v for k, v in leased.oauth.items() if k != "refreshLease"}
        try:
            self.swap(leased, leased.with_oauth(oauth))
        except Exception:  # noqa: BLE001 - the lease then simply expires
            logger.warning("could not release the OAuth refresh lease", extra={"secretId": self.secret_id})

    # ----- saving a rotation -----------------------------------------------------------------

    def save(self, leased: Snapshot, document: dict[str, Any]) -> bool:
        """Swap in the rotated tokens; on failure keep them and retry later (``flush``)."""
        spent = str(leased.oauth.get("refreshToken") or "")
        with self._lock:
            self._pending = _PendingSave(leased, document, spent)
            return self._attempt()

    def flush(self) -> bool:
        """Retry an unsaved rotation when its backoff has passed. True when nothing is left unsaved."""
        with self._lock:
            if self._pending is None:
                return True
            if self.monotonic() < self._pending.next_try:
                return False
            return self._attempt()

    @property
    def unsaved(self) -> bool:
        with self._lock:
            return self._pending is not None

    def _attempt(self) -> bool:
        """Caller holds ``_lock``. If ``AWSCURRENT`` moved on but still holds the refresh token we
        spent (e.g. an expired lease taken over), write on top of it: ours is the only valid one."""
        pending = self._pending
        assert pending is not None
        base: Snapshot = pending.base
        try:
            for _ in range(5):
                if self.swap(base, pending.document) is not None:
                    self._pending = None
                    return True
                base = self.read()
                if base.oauth.get("refreshToken") != pending.spent:
                    # A newer grant was stored (e.g. the app was re-authorised): leave it be.
                    logger.warning("rotated OAuth tokens superseded", extra={"secretId": self.secret_id})
                    self._pending = None
                    return True
            reason = "lost the swap five times"
        except Exception as exc:  # noqa: BLE001 - kept in memory and retried on a later call
            reason = type(exc).__name__
        pending.base = base
        pending.failures += 1
        delay = min(self.retry_max, self.retry_base * 2 ** (pending.failures - 1))
        pending.next_try = self.monotonic() + delay
        self.count(WRITE_BACK_FAILED)
        logger.error(
            "could not save rotated OAuth tokens; kept in memory, retrying",
            extra={"secretId": self.secret_id, "error": reason, "failures": pending.failures},
        )
        return False
