"""The enricher's and the reconciler's environment as pydantic models (private: import them from
``config``, which loads this module on first use so the receiver never imports pydantic).

Variables with an old name (``DEAD_LETTER_QUEUE_URL`` for ``QUARANTINE_QUEUE_URL``) are read
through ``validation_alias=AliasChoices(new, old)``: either name alone works, the new one wins
when both are set, and an error names both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Final, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ..errors import ConfigError
from ..ledger.base import MAX_RECONCILE_LOOKAHEAD_DAYS, MAX_RECONCILE_LOOKBACK_DAYS
from ..powerleads.client import DEFAULT_TIMEOUT, RetryPolicy
from ..related import DEFAULT_CONTACT_FIELDS, RelatedKind
from ..wire import (
    DEFAULT_API_BASE_URL,
    DEFAULT_API_VERSION,
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_NOT_FOUND_GRACE_SECONDS,
    MAX_MAX_AGE_SECONDS,
)

# The enricher's quarantine queue, and the name it had before (still accepted, see the docstring).
QUARANTINE_QUEUE_VARIABLES: Final = ("QUARANTINE_QUEUE_URL", "DEAD_LETTER_QUEUE_URL")
# The reconciler's own attempts per request: a list that still fails is retried by the next run.
RECONCILE_MAX_ATTEMPTS: Final = 4


class _Settings(BaseModel):
    # hide_input_in_errors: a validation error would otherwise carry the values (POWERLEADS_TOKEN).
    model_config = ConfigDict(
        frozen=True, extra="ignore", str_strip_whitespace=True, hide_input_in_errors=True
    )

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment name this model reads -> the name its errors report (aliases too)."""
        names: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else []
            aliases = [choice for choice in choices if isinstance(choice, str)]
            shown = " or ".join(aliases) if aliases else name
            names.update(dict.fromkeys([*aliases, name], shown))
        return names

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        names = cls.variables()
        data = {name: value for name, value in env.items() if name in names and value != ""}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{_where(e['loc'], names)}: {e['msg']}" for e in exc.errors())
            # from None: the chained pydantic error would print the input (the token) in tracebacks.
            raise ConfigError(f"invalid configuration: {problems}") from None


def _where(loc: tuple[int | str, ...], names: Mapping[str, str]) -> str:
    """The variable an error is about (both names of an aliased one), with any list index."""
    if not loc:
        return "config"
    first = str(loc[0])
    return ".".join([names.get(first, first), *map(str, loc[1:])])


def _name_list(value: object) -> object:
    """A comma-separated list of names (ENRICH_RELATED, CONTACT_FIELDS); blanks ignored."""
    if isinstance(value, str):
        return list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    return value


RelatedKinds = Annotated[list[RelatedKind], BeforeValidator(_name_list)]
ContactFields = Annotated[
    list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]], BeforeValidator(_name_list)
]


class EnricherSettings(_Settings):
    """EnricherFunction."""

    OUTPUT_TOPIC_ARN: str | None = None
    OUTPUT_QUEUE_URL: str | None = None
    QUARANTINE_QUEUE_URL: str = Field(validation_alias=AliasChoices(*QUARANTINE_QUEUE_VARIABLES))
    IDEMPOTENCY_TABLE_NAME: str | None = None
    LEDGER_TABLE_NAME: str | None = None  # unset: no change tracking
    NOT_FOUND_GRACE_SECONDS: int = Field(default=DEFAULT_NOT_FOUND_GRACE_SECONDS, ge=0, le=86_400)
    SUPPRESS_UNCHANGED_RECORDS: bool = False  # needs the ledger; unchanged records are counted, not sent
    POWERLEADS_API_BASE_URL: str = DEFAULT_API_BASE_URL
    POWERLEADS_API_VERSION: str = DEFAULT_API_VERSION
    POWERLEADS_TOKEN_SECRET_ID: str | None = None
    POWERLEADS_TOKEN: str | None = Field(default=None, repr=False)
    WEBHOOK_MAX_AGE_SECONDS: int = Field(default=DEFAULT_MAX_AGE_SECONDS, gt=0, le=MAX_MAX_AGE_SECONDS)
    ENRICHER_MAX_WORKERS: int = Field(default=10, ge=1, le=64)  # a full FIFO batch in one wave
    POWERLEADS_CONNECT_TIMEOUT_SECONDS: float = Field(default=DEFAULT_TIMEOUT[0], gt=0)
    POWERLEADS_READ_TIMEOUT_SECONDS: float = Field(default=DEFAULT_TIMEOUT[1], gt=0)
    POWERLEADS_MAX_ATTEMPTS: int = Field(default=RetryPolicy.max_attempts, ge=1, le=20)
    POWERLEADS_RETRY_BASE_SECONDS: float = Field(default=RetryPolicy.base_delay, gt=0)
    POWERLEADS_RETRY_MAX_SECONDS: float = Field(default=RetryPolicy.max_delay, gt=0)
    ENRICHER_DEADLINE_MARGIN_SECONDS: float = Field(default=5.0, ge=0)
    # ``default=[]``, not ``default_factory=list`` (pydantic copies a mutable default for each
    # instance): pydantic reads a factory's signature, and ``list``'s is parsed from its text with
    # the tokenizer, whose patterns cost 1.4 ms of the enricher's cold start to compile.
    ENRICH_RELATED: RelatedKinds = Field(default=[])  # unset: no related entities
    CONTACT_FIELDS: ContactFields = Field(default_factory=lambda: list(DEFAULT_CONTACT_FIELDS))
    RELATED_CACHE_SECONDS: int = Field(default=3600, ge=0, le=86_400)
    CONTACT_CACHE_SECONDS: int = Field(default=300, ge=0, le=86_400)
    # The fleet's upstream budget (budget/): a table holding it, else one bucket per container.
    BUDGET_TABLE_NAME: str | None = None
    # Throttled items are handed back on this queue (enrich/handback.py); unset: batch item failures.
    INGEST_QUEUE_URL: str | None = None
    INGEST_MAX_RECEIVE_COUNT: int = Field(default=5, ge=1, le=1000)
    # The event source's MaximumConcurrency: sizes each container's own budget share (budget/).
    ENRICHER_MAXIMUM_CONCURRENCY: int | None = Field(default=None, ge=1, le=1000)

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

    # Built on first validation, not at class creation: the enricher imports this module too and
    # would otherwise pay for a validator it never uses (cold start, BENCHMARKS.md).
    model_config = ConfigDict(**_Settings.model_config, defer_build=True)

    INGEST_QUEUE_URL: str
    LEDGER_TABLE_NAME: str  # the comparison needs it, and the cursors live there
    POWERLEADS_API_BASE_URL: str = DEFAULT_API_BASE_URL
    POWERLEADS_API_VERSION: str = DEFAULT_API_VERSION
    POWERLEADS_TOKEN_SECRET_ID: str | None = None
    POWERLEADS_TOKEN: str | None = Field(default=None, repr=False)
    RECONCILE_LOCATION_IDS: LocationIds = Field(default=[])  # not ``list``: see ENRICH_RELATED
    # Bounded so the ledger's TTL covers every listing (``ledger.base.ledger_expiration``).
    RECONCILE_LOOKBACK_DAYS: float = Field(default=7, ge=0, le=MAX_RECONCILE_LOOKBACK_DAYS)
    RECONCILE_LOOKAHEAD_DAYS: float = Field(default=90, ge=0, le=MAX_RECONCILE_LOOKAHEAD_DAYS)
    # The reconciler's share of each location's 100 requests / 10 s (the enricher needs the rest).
    RECONCILE_REQUESTS_PER_10S: int = Field(default=20, ge=1, le=50)
    RECONCILE_MAX_EVENTS_PER_WINDOW: int = Field(default=250, ge=10)
    BUDGET_TABLE_NAME: str | None = None  # the fleet's upstream budget (budget/), shared with the enricher
    # The enricher's event source MaximumConcurrency: the bucket is sized as the enricher sizes it.
    ENRICHER_MAXIMUM_CONCURRENCY: int | None = Field(default=None, ge=1, le=1000)
    RECONCILE_DEADLINE_MARGIN_SECONDS: float = Field(default=10.0, ge=0)
    POWERLEADS_CONNECT_TIMEOUT_SECONDS: float = Field(default=DEFAULT_TIMEOUT[0], gt=0)
    POWERLEADS_READ_TIMEOUT_SECONDS: float = Field(default=DEFAULT_TIMEOUT[1], gt=0)
    POWERLEADS_MAX_ATTEMPTS: int = Field(default=RECONCILE_MAX_ATTEMPTS, ge=1, le=20)

    @model_validator(mode="after")
    def _needs_token(self) -> ReconcilerSettings:
        if not self.POWERLEADS_TOKEN_SECRET_ID and not self.POWERLEADS_TOKEN:
            raise ValueError("set POWERLEADS_TOKEN_SECRET_ID (or POWERLEADS_TOKEN for local runs)")
        return self
