"""The package's errors: one base that says how a failure is classified, and the one config error.

Every error this package raises on purpose derives from ``EnricherError`` and carries two class
attributes the callers read directly (no ``getattr`` guessing):

* ``error_type``: the stable name logged, counted and written to the quarantine queue;
* ``retryable``: True, the message comes back later (batch item failure); False, it is
  quarantined (the enricher) or the failing request is skipped (the reconciler).

An exception that is not an ``EnricherError`` (a bug, a library's own error) is treated as
retryable by every caller, explicitly: a wrong retry costs a redelivery, a wrong quarantine loses
an event until a human looks.

Imports nothing (the receiver's cold start and every module may depend on it).
"""

from __future__ import annotations

from typing import ClassVar


class EnricherError(Exception):
    """Base of the package's errors; ``error_type`` and ``retryable`` classify the failure."""

    error_type: ClassVar[str] = "EnricherError"
    retryable: ClassVar[bool] = True


def classify(exc: BaseException) -> tuple[str, bool]:
    """(error type, retryable) of any exception: ours say; anything else is retryable."""
    if isinstance(exc, EnricherError):
        return exc.error_type, exc.retryable
    return type(exc).__name__, True


class ConfigError(EnricherError, RuntimeError):
    """A function is misconfigured: its cold start fails with a message naming the variable (and
    never its value). The one configuration error of every function (receiver, enricher,
    reconciler, the signature keys)."""

    error_type = "ConfigError"
    retryable = False
