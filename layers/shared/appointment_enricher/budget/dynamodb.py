"""The fleet's bucket in DynamoDB: one item per location (``id`` = ``budget#<locationId>``, TTL
``expiration``), in the ledger table.

A lease is one conditional ``UpdateItem`` on a version number: the container computes the new
state from the last state it saw (``base.decide``) and writes it only if nobody wrote in
between; on a conflict DynamoDB returns the current item (``ReturnValuesOnConditionCheckFailure``)
and the container decides again (no extra read). A refused lease (wait) costs nothing: the wait
is computed from the cached state, which can only be older (smaller ``tat``) than the truth, so a
container never waits long on it: a refusal of more than ``REFRESH_AFTER_WAIT`` is confirmed
with one consistent read (the item may have been reset or expired).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .base import Lease, Limits, State, correct, decide

KEY_PREFIX = "budget#"
TTL_SECONDS = 2 * 24 * 60 * 60  # two days: a day's count must outlive the day
MAX_CONFLICTS = 4
REFRESH_AFTER_WAIT = 1.0  # seconds: a refusal longer than this is checked against the table


class DynamoBudget:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name
        self._seen: dict[str, tuple[State, int]] = {}
        self._lock = threading.Lock()

    def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease:
        refreshed = False
        for _ in range(MAX_CONFLICTS):
            state, version = self._cached(location_id)
            lease, new_state = decide(state, count, now, limits)
            if not lease.tokens:
                if lease.wait <= REFRESH_AFTER_WAIT or refreshed:
                    return lease
                # A long wait from what this container saw last: the item may have been reset
                # or expired since. Confirm with one read before the work is handed back.
                self._refresh(location_id)
                refreshed = True
                continue
            if self._write(location_id, new_state, version, now):
                return lease
        return Lease(0, limits.spacing)  # heavy contention: back off one token's time

    def observe(self, location_id: str, headers: Mapping[str, Any], *, now: float, limits: Limits) -> None:
        for _ in range(MAX_CONFLICTS):
            state, version = self._cached(location_id)
            new_state = correct(state, headers, now, limits)
            if new_state is None or self._write(location_id, new_state, version, now):
                return

    def queue_place(self, location_id: str, *, earliest: float, limits: Limits) -> float:
        """One ``UpdateItem`` (two when the queue was idle): ``qtat`` grows by one token's time."""
        key = {"id": {"S": KEY_PREFIX + location_id}}
        step = {":s": {"N": repr(limits.place_spacing)}, ":e": {"N": repr(earliest)}}
        for _ in range(MAX_CONFLICTS):
            try:
                response = self.client.update_item(
                    TableName=self.table_name,
                    Key=key,
                    UpdateExpression="SET qtat = qtat + :s",
                    ConditionExpression="qtat >= :e",
                    ExpressionAttributeValues=step,
                    ReturnValues="UPDATED_NEW",
                )
                return float(response["Attributes"]["qtat"]["N"])
            except self.client.exceptions.ConditionalCheckFailedException:
                pass
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=key,
                    UpdateExpression="SET qtat = :q",
                    ConditionExpression="attribute_not_exists(qtat) OR qtat < :e",
                    ExpressionAttributeValues={
                        ":q": {"N": repr(earliest + limits.place_spacing)},
                        ":e": step[":e"],
                    },
                )
                return earliest + limits.place_spacing
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
        return earliest + limits.place_spacing

    def _cached(self, location_id: str) -> tuple[State, int]:
        with self._lock:
            return self._seen.get(location_id, (State(), 0))

    def _write(self, location_id: str, state: State, version: int, now: float) -> bool:
        """True if written; on a conflict the current item is cached and False returned."""
        condition = "attribute_not_exists(v) OR v = :v" if version == 0 else "v = :v"
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"id": {"S": KEY_PREFIX + location_id}},
                UpdateExpression="SET tat = :tat, #d = :day, used = :used, v = :next, expiration = :exp",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#d": "day"},
                ExpressionAttributeValues={
                    ":tat": {"N": repr(state.tat)},
                    ":day": {"S": state.day},
                    ":used": {"N": str(state.used)},
                    ":v": {"N": str(version)},
                    ":next": {"N": str(version + 1)},
                    ":exp": {"N": str(int(now) + TTL_SECONDS)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            self._remember(location_id, exc.response.get("Item"))
            return False
        with self._lock:
            self._seen[location_id] = (state, version + 1)
        return True

    def _refresh(self, location_id: str) -> None:
        """A consistent read (``BatchGetItem``: the call the enricher's role already has on the
        table); a missing item is an empty bucket."""
        key = {"id": {"S": KEY_PREFIX + location_id}}
        response = self.client.batch_get_item(
            RequestItems={self.table_name: {"Keys": [key], "ConsistentRead": True}}
        )
        items = response.get("Responses", {}).get(self.table_name) or []
        if items:
            self._remember(location_id, items[0])
        else:
            with self._lock:
                self._seen.pop(location_id, None)

    def _remember(self, location_id: str, item: Mapping[str, Any] | None) -> None:
        if not item:
            return
        state = State(
            float(item.get("tat", {}).get("N", "0")),
            str(item.get("day", {}).get("S", "")),
            int(item.get("used", {}).get("N", "0")),
        )
        with self._lock:
            self._seen[location_id] = (state, int(item.get("v", {}).get("N", "0")))
