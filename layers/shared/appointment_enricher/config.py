"""The enricher's environment variables as a pydantic model.

The receiver reads its few variables in ``receiver.ReceiverConfig`` without pydantic, to keep its
cold start near ``import boto3``; both fail the cold start with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .wire import DEFAULT_NOT_FOUND_GRACE_SECONDS

DEFAULT_API_BASE_URL = "https://services.leadconnectorhq.com"
DEFAULT_API_VERSION = "2021-04-15"
MAX_AGE_LIMIT_SECONDS = 30 * 86400  # as the receiver's bound: the idempotency TTL is twice this


class ConfigError(RuntimeError):
    """The function is misconfigured: fail the cold start with a message naming the variable."""


class _Settings(BaseModel):
    # hide_input_in_errors: a validation error would otherwise carry the values (POWERLEADS_TOKEN).
    model_config = ConfigDict(
        frozen=True, extra="ignore", str_strip_whitespace=True, hide_input_in_errors=True
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        data = {name: value for name, value in env.items() if name in cls.model_fields and value != ""}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
            )
            # from None: the chained pydantic error would print the input (the token) in tracebacks.
            raise ConfigError(f"invalid configuration: {problems}") from None


class EnricherSettings(_Settings):
    """EnricherFunction."""

    OUTPUT_TOPIC_ARN: str | None = None
    OUTPUT_QUEUE_URL: str | None = None
    DEAD_LETTER_QUEUE_URL: str
    IDEMPOTENCY_TABLE_NAME: str | None = None
    LEDGER_TABLE_NAME: str | None = None  # unset: no change tracking
    NOT_FOUND_GRACE_SECONDS: int = Field(default=DEFAULT_NOT_FOUND_GRACE_SECONDS, ge=0, le=86_400)
    SUPPRESS_UNCHANGED_RECORDS: bool = False  # needs the ledger; unchanged records are counted, not sent
    POWERLEADS_API_BASE_URL: str = DEFAULT_API_BASE_URL
    POWERLEADS_API_VERSION: str = DEFAULT_API_VERSION
    POWERLEADS_TOKEN_SECRET_ID: str | None = None
    POWERLEADS_TOKEN: str | None = Field(default=None, repr=False)
    WEBHOOK_MAX_AGE_SECONDS: int = Field(default=86400, gt=0, le=MAX_AGE_LIMIT_SECONDS)
    ENRICHER_MAX_WORKERS: int = Field(default=10, ge=1, le=64)  # a full FIFO batch in one wave
    POWERLEADS_CONNECT_TIMEOUT_SECONDS: float = Field(default=3.05, gt=0)
    POWERLEADS_READ_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    POWERLEADS_MAX_ATTEMPTS: int = Field(default=6, ge=1, le=20)
    POWERLEADS_RETRY_BASE_SECONDS: float = Field(default=0.2, gt=0)
    POWERLEADS_RETRY_MAX_SECONDS: float = Field(default=5.0, gt=0)
    ENRICHER_DEADLINE_MARGIN_SECONDS: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _needs_output_and_token(self) -> EnricherSettings:
        if not self.OUTPUT_TOPIC_ARN and not self.OUTPUT_QUEUE_URL:
            raise ValueError("set OUTPUT_TOPIC_ARN, OUTPUT_QUEUE_URL or both")
        if not self.POWERLEADS_TOKEN_SECRET_ID and not self.POWERLEADS_TOKEN:
            raise ValueError("set POWERLEADS_TOKEN_SECRET_ID (or POWERLEADS_TOKEN for local runs)")
        if self.SUPPRESS_UNCHANGED_RECORDS and not self.LEDGER_TABLE_NAME:
            raise ValueError(
                "SUPPRESS_UNCHANGED_RECORDS needs LEDGER_TABLE_NAME (unchanged is known from the ledger)"
            )
        return self

    @property
    def idempotency_ttl_seconds(self) -> int:
        """At least twice the webhook max age, so a redelivery inside the accepted window is caught."""
        return 2 * self.WEBHOOK_MAX_AGE_SECONDS


def _id_list(value: object) -> object:
    """``RECONCILE_LOCATION_IDS``: comma-separated ids; blanks between commas are ignored."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


LocationIds = Annotated[
    list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")]], BeforeValidator(_id_list)
]


class ReconcilerSettings(_Settings):
    """ReconcilerFunction: what it sweeps, where it reads the ledger, where it enqueues."""

    INGEST_QUEUE_URL: str
    LEDGER_TABLE_NAME: str  # the comparison needs it, and the cursors live there
    POWERLEADS_API_BASE_URL: str = DEFAULT_API_BASE_URL
    POWERLEADS_API_VERSION: str = DEFAULT_API_VERSION
    POWERLEADS_TOKEN_SECRET_ID: str | None = None
    POWERLEADS_TOKEN: str | None = Field(default=None, repr=False)
    RECONCILE_LOCATION_IDS: LocationIds = Field(default_factory=list)
    RECONCILE_LOOKBACK_DAYS: float = Field(default=7, ge=0, le=366)
    RECONCILE_LOOKAHEAD_DAYS: float = Field(default=90, ge=0, le=731)
    # The reconciler's share of each location's 100 requests / 10 s (the enricher needs the rest).
    RECONCILE_REQUESTS_PER_10S: int = Field(default=20, ge=1, le=50)
    RECONCILE_MAX_EVENTS_PER_WINDOW: int = Field(default=250, ge=10)
    RECONCILE_DEADLINE_MARGIN_SECONDS: float = Field(default=10.0, ge=0)
    POWERLEADS_CONNECT_TIMEOUT_SECONDS: float = Field(default=3.05, gt=0)
    POWERLEADS_READ_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    POWERLEADS_MAX_ATTEMPTS: int = Field(default=4, ge=1, le=20)

    @model_validator(mode="after")
    def _needs_token(self) -> ReconcilerSettings:
        if not self.POWERLEADS_TOKEN_SECRET_ID and not self.POWERLEADS_TOKEN:
            raise ValueError("set POWERLEADS_TOKEN_SECRET_ID (or POWERLEADS_TOKEN for local runs)")
        return self
