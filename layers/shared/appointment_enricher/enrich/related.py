"""Step 3b: the appointment's related entities (ENRICH_RELATED), fetched once per batch and cached.

* one fetch per distinct entity per batch: groups on other worker threads asking for the same
  calendar wait for the first one's answer (``RelatedBatch``);
* an in-memory TTL cache per container (``RelatedCache``): calendars, users and locations for
  RELATED_CACHE_SECONDS, contacts for CONTACT_CACHE_SECONDS (docs/ARCHITECTURE.md has the figures
  that chose a per-container cache over a shared one);
* failure rules: a transient failure (429, 5xx, timeout, 401 after the client's one token
  refresh) retries the message like the appointment's fetch (no fleet budget left: handed back
  like it); a permanent one is ``null`` plus its reason (404 NotFound, 400/422 Invalid, 403
  Forbidden, no id NoId). Never a quarantine.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from ..budget.base import BudgetThrottled
from ..clocks import Monotonic
from ..entities import read_entity
from ..errors import classify
from ..related import RELATED_KINDS, RelatedResult, cut_contact, entity_ids, pick_timezone

MAX_CACHED = 20_000  # entities per container (a few KB each at most)


class RelatedSource(Protocol):
    def get_related(
        self, kind: str, entity_id: str, location_id: str, *, deadline: float
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Found:
    entity: dict[str, Any]


@dataclass(frozen=True)
class Missing:
    reason: str


@dataclass(frozen=True)
class Transient:
    error_type: str
    message: str
    throttled_for: float | None = None  # the fleet budget said: come back in this many seconds


Answer = Found | Missing | Transient
Key = tuple[str, str, str]  # (kind, location id, entity id)


def classify_failure(exc: BaseException) -> Answer:
    """What an upstream failure means for one related entity."""
    status = getattr(exc, "status", None)
    error_type, retryable = classify(exc)
    if status == 404 or error_type == "AppointmentNotFound":
        return Missing("NotFound")
    if status == 403:
        return Missing("Forbidden")
    if not retryable:
        return Missing("Invalid")  # 400, 422, an id we refuse to send, a body that is not JSON
    # No budget for the entity's location: handed back like the appointment's own fetch, never a
    # receive counted towards the DLQ.
    throttled_for = exc.retry_after if isinstance(exc, BudgetThrottled) else None
    return Transient(error_type, f"{error_type} fetching a related entity: {str(exc)[:300]}", throttled_for)


class RelatedCache:
    """Entities found, per container, each for its kind's TTL (thread-safe, bounded, oldest out)."""

    def __init__(
        self, related_seconds: float, contact_seconds: float, *, monotonic: Monotonic = time.monotonic
    ) -> None:
        self.ttl: dict[str, float] = {kind: float(related_seconds) for kind in RELATED_KINDS}
        self.ttl["contact"] = float(contact_seconds)
        self.monotonic = monotonic
        self._items: OrderedDict[Key, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            if hit[0] <= self.monotonic():
                del self._items[key]
                return None
            return hit[1]

    def put(self, key: Key, entity: dict[str, Any]) -> None:
        ttl = self.ttl[key[0]]
        if ttl <= 0:
            return
        with self._lock:
            self._items[key] = (self.monotonic() + ttl, entity)
            self._items.move_to_end(key)
            while len(self._items) > MAX_CACHED:
                self._items.popitem(last=False)


class RelatedBatch:
    """One batch's answers: each distinct entity asked for once, shared by every group."""

    def __init__(self, fetcher: RelatedFetcher, deadline: float) -> None:
        self.fetcher = fetcher
        self.deadline = deadline
        self._answers: dict[Key, Answer] = {}
        self._pending: dict[Key, threading.Event] = {}
        self._lock = threading.Lock()

    def answer(self, key: Key) -> Answer:
        with self._lock:
            if key in self._answers:
                return self._answers[key]
            waiting = self._pending.get(key)
            if waiting is None:
                self._pending[key] = threading.Event()
        if waiting is not None:  # another group is fetching it: its answer is ours
            waiting.wait()
            with self._lock:
                return self._answers[key]
        answer: Answer = Transient("UnexpectedError", "related entity fetch failed unexpectedly")
        try:
            answer = self.fetcher.fetch(key, self.deadline)
        finally:
            with self._lock:
                self._answers[key] = answer
                self._pending.pop(key).set()
        return answer

    def _answer_all(self, keys: list[Key]) -> dict[str, Answer]:
        """Each key's answer; with the fetcher's pool, an appointment's entities in parallel (its
        own worker thread takes the first, so a warm cache costs no hand-off)."""
        pool = self.fetcher.pool
        if pool is None or len(keys) < 2:
            return {key[0]: self.answer(key) for key in keys}
        futures = [pool.submit(self.answer, key) for key in keys[1:]]
        answers = {keys[0][0]: self.answer(keys[0])}
        answers.update((key[0], future.result()) for key, future in zip(keys[1:], futures, strict=True))
        return answers

    def resolve(self, appointment: Any, location_id: str) -> RelatedResult | Transient:
        """Every requested entity of this appointment (its snapshot when deleted)."""
        result = RelatedResult(wants_timezone=bool({"location", "contact"} & set(self.fetcher.kinds)))
        full: dict[str, dict[str, Any]] = {}
        ids = entity_ids(appointment, location_id, self.fetcher.kinds)
        answers = self._answer_all([(kind, location_id, i) for kind, i in ids.items() if i is not None])
        for kind in ids:
            answer = answers.get(kind, Missing("NoId"))
            if isinstance(answer, Transient):
                return answer
            if isinstance(answer, Missing):
                result.entities[kind], result.errors[kind] = None, answer.reason
                continue
            full[kind] = answer.entity
            shown = (
                cut_contact(answer.entity, self.fetcher.contact_fields)
                if kind == "contact"
                else answer.entity
            )
            result.entities[kind] = shown
        result.timezone = pick_timezone(full.get("location"), full.get("contact"))
        return result


class RelatedFetcher:
    """The container's related-entity reader: which kinds, the contact allow-list, the cache."""

    def __init__(
        self,
        source: RelatedSource,
        kinds: Iterable[str],
        contact_fields: Iterable[str],
        cache: RelatedCache,
        pool: Executor | None = None,
    ) -> None:
        self.source = source
        self.pool = pool  # fetches one appointment's entities in parallel (None: one after another)
        self.kinds = tuple(kind for kind in RELATED_KINDS if kind in set(kinds))
        self.contact_fields = tuple(contact_fields)
        self.cache = cache

    def batch(self, deadline: float) -> RelatedBatch:
        return RelatedBatch(self, deadline)

    def fetch(self, key: Key, deadline: float) -> Answer:
        cached = self.cache.get(key)
        if cached is not None:
            return Found(cached)
        kind, location_id, entity_id = key
        try:
            payload = self.source.get_related(kind, entity_id, location_id, deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - ours say what they are; anything else is transient
            return classify_failure(exc)
        entity = read_entity(kind, payload)
        if entity is None:
            return Missing("Invalid")
        self.cache.put(key, entity)
        return Found(entity)
