"""``make run``'s console in words: the functions' structured log lines about retries and upstream
failures, said as one plain line each (dev only, never ships).

A ``logging.Handler`` on the functions' Powertools logger reads the fields the enricher and the
reconciler log (``errorType``, ``errorMessage``, ``status``, ``locationId``; never a token or a
body) and says, for example::

    ... upstream 401: token rejected (check --token / POWERLEADS_TOKEN); retried, next try in 6 min
    ... 404, retrying until the 120 s grace ends, next try in 6 min
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

_STATUS = re.compile(r"\b([1-5]\d\d)\b")


def duration(seconds: float) -> str:
    """``6 min``, ``90 s``: how long until a retried message is delivered again."""
    whole = round(seconds)
    return f"{whole // 60} min" if whole >= 60 and whole % 60 == 0 else f"{whole} s"


def retry_words(error_type: str, message: str, *, grace_seconds: float, next_try: str) -> str:
    """Why an ingest message goes back to the queue, and when it comes back."""
    status = _STATUS.search(message)
    if error_type == "NotFoundWithinGrace":
        return f"404, retrying until the {grace_seconds:g} s grace ends, next try in {next_try}"
    if error_type == "UpstreamAuthError":
        if status and status.group(1) == "403":
            return (
                "upstream 403: the token may not read this location (its scopes, the app's install); "
                f"retried, next try in {next_try}"
            )
        return (
            f"upstream {status.group(1) if status else '401'}: token rejected (check --token / "
            f"POWERLEADS_TOKEN); retried, next try in {next_try}"
        )
    if error_type == "UpstreamUnavailable":
        return f"PowerLeads unavailable ({message[:80]}); next try in {next_try}"
    if error_type == "StaleRead":
        return f"upstream answered an older version than already published; next try in {next_try}"
    return f"{error_type}: {message[:120]}; next try in {next_try}"


def reconcile_words(status: object, error: str) -> str:
    if status == 401:
        return "upstream 401: token rejected (check --token / POWERLEADS_TOKEN)"
    if isinstance(status, int):
        return f"upstream {status} ({error})"
    return f"PowerLeads unreachable or failing ({error})"


class Console(logging.Handler):
    """Says the causes in words through ``say``; keeps them by appointment for the demo's verdict."""

    def __init__(self, say: Callable[[str], None], *, grace_seconds: float, next_try_seconds: float) -> None:
        super().__init__(level=logging.WARNING)
        self.say = say
        self.grace_seconds = grace_seconds
        self.next_try = duration(next_try_seconds)
        self.causes: dict[str, str] = {}  # appointment id (or location) -> the last cause said
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        fields = vars(record)
        message = record.getMessage()
        if message == "record retry":
            subject = str(fields.get("appointmentId") or fields.get("messageId") or "?")
            words = retry_words(
                str(fields.get("errorType") or "?"),
                str(fields.get("errorMessage") or ""),
                grace_seconds=self.grace_seconds,
                next_try=self.next_try,
            )
            line = f"... {subject}: {words}"
        elif message == "upstream list failed":
            subject = f"reconcile {fields.get('locationId') or '?'}"
            words = reconcile_words(fields.get("status"), str(fields.get("error") or "error"))
            line = f"<<< {subject}: {words}"
        else:
            return
        with self._lock:
            self.causes[subject] = words
        self.say(line)

    def attach(self, logger_name: str) -> Callable[[], None]:
        """Listen on ``logger_name``; returns what detaches again."""
        logger = logging.getLogger(logger_name)
        logger.addHandler(self)
        return lambda: logger.removeHandler(self)
