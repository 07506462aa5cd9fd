"""The receiver's environment (``ReceiverConfig``) and the tenancy every function applies.

A plain dataclass parsed by hand, never pydantic: the receiver imports this module on its cold
start, and pydantic would cost most of its budget (BENCHMARKS.md; a subprocess test in
``tests/unit/test_webhook_handler.py`` keeps it so). Errors are the one ``errors.ConfigError``,
whose message names the variable and never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..wire import DEFAULT_MAX_AGE_SECONDS, MAX_MAX_AGE_SECONDS, WebhookRef, is_valid_id

__all__ = ["ReceiverConfig", "Tenancy"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _id_list(environ: Mapping[str, str], name: str) -> frozenset[str] | None:
    """A comma-separated id allow-list; unset or blank means "any" (None)."""
    text = environ.get(name, "").strip()
    if not text:
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    bad = [part for part in ids if not is_valid_id(part)]
    if bad or not ids:
        raise ConfigError(
            f"{name} must be a comma-separated list of ids matching [A-Za-z0-9_-]{{1,128}}"
            f" ({len(bad)} invalid)"
        )
    return frozenset(ids)


@dataclass(frozen=True)
class Tenancy:
    """Which marketplace apps and locations this deployment serves (None = any).

    HighLevel signs every app's webhooks with one key, so a valid signature proves the sender,
    not the recipient: an event for another app or location is answered 200 ignored (a final
    answer, so it is not retried at us) and counted, never queued.
    """

    app_ids: frozenset[str] | None = None
    location_ids: frozenset[str] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tenancy:
        """``WEBHOOK_APP_IDS`` and ``WEBHOOK_LOCATION_IDS``."""
        return cls(_id_list(environ, "WEBHOOK_APP_IDS"), _id_list(environ, "WEBHOOK_LOCATION_IDS"))

    def foreign(self, ref: WebhookRef) -> str | None:
        """Why ``ref`` is not ours (``foreign_app``, ``missing_app_id``, ``foreign_location``), or None.

        A body without ``appId`` while app ids are configured is not ours: HighLevel's real
        deliveries carry ``appId``, so its absence means the body did not come through our app.
        """
        if self.app_ids is not None:
            if ref.app_id is None:
                return "missing_app_id"
            if ref.app_id not in self.app_ids:
                return "foreign_app"
        if self.location_ids is not None and ref.location_id not in self.location_ids:
            return "foreign_location"
        return None


def _max_age(text: str | None) -> int:
    try:
        max_age = int(text or DEFAULT_MAX_AGE_SECONDS)
    except ValueError:
        max_age = 0
    if not 0 < max_age <= MAX_MAX_AGE_SECONDS:
        # A wider replay window is no window (and 10**12 seconds overflows datetime).
        raise ConfigError(
            f"WEBHOOK_MAX_AGE_SECONDS must be a whole number of seconds in 1..{MAX_MAX_AGE_SECONDS}"
        )
    return max_age


@dataclass(frozen=True)
class ReceiverConfig:
    """The environment WebhookFunction reads (the runtime contract), parsed without pydantic."""

    ingest_queue_url: str
    ed25519_public_key: str | None = None
    rsa_public_key: str | None = None
    signature_required: bool = True
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    tenancy: Tenancy = field(default_factory=Tenancy)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReceiverConfig:
        def text(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        queue_url = text("INGEST_QUEUE_URL")
        if not queue_url:
            raise ConfigError("INGEST_QUEUE_URL is required (the FIFO ingest queue URL)")
        required = (text("WEBHOOK_SIGNATURE_REQUIRED") or "true").lower()
        if required not in _TRUE | _FALSE:
            raise ConfigError("WEBHOOK_SIGNATURE_REQUIRED must be true or false")
        return cls(
            ingest_queue_url=queue_url,
            ed25519_public_key=text("WEBHOOK_ED25519_PUBLIC_KEY"),
            rsa_public_key=text("WEBHOOK_RSA_PUBLIC_KEY"),
            signature_required=required in _TRUE,
            max_age_seconds=_max_age(text("WEBHOOK_MAX_AGE_SECONDS")),
            tenancy=Tenancy.from_env(environ),
        )
