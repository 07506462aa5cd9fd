"""The reconciler's cursor store with a stub client: chunking, unprocessed keys, item shapes."""

from __future__ import annotations

from typing import Any

import pytest

from appointment_enricher.reconcile.cursors import DynamoCursorStore, batch_get
from appointment_enricher.reconcile.run import Cursor


class StubClient:
    """Answers BatchGetItem from ``items``; the first ``unprocessed`` calls leave half the keys."""

    def __init__(self, items: dict[str, dict[str, Any]], unprocessed: int = 0) -> None:
        self.items, self.unprocessed = items, unprocessed
        self.calls: list[int] = []
        self.puts: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        assert len(keys) <= 100
        self.calls.append(len(keys))
        done, left = (keys[: len(keys) // 2], keys[len(keys) // 2 :]) if self.unprocessed else (keys, [])
        self.unprocessed = max(0, self.unprocessed - 1)
        found = [self.items[k["id"]["S"]] for k in done if k["id"]["S"] in self.items]
        response: dict[str, Any] = {"Responses": {table: found}}
        if left:
            response["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return response

    def put_item(self, TableName: str, Item: dict[str, Any]) -> None:
        self.puts.append(Item)


def test_batch_get_chunks_by_100_and_retries_unprocessed_keys() -> None:
    items = {f"appointment#A{i}": {"id": {"S": f"appointment#A{i}"}} for i in range(250)}
    client = StubClient(items, unprocessed=2)
    sleeps: list[float] = []
    found = batch_get(client, "t", [f"appointment#A{i}" for i in range(250)], "id", sleep=sleeps.append)  # type: ignore[arg-type]
    assert len(found) == 250
    assert client.calls[:3] == [100, 50, 25] and len(sleeps) == 2


def test_batch_get_gives_up_when_keys_stay_unprocessed() -> None:
    client = StubClient({}, unprocessed=100)
    with pytest.raises(RuntimeError, match="unprocessed"):
        batch_get(client, "t", ["a", "b", "c", "d"] * 50, "id", sleep=lambda _s: None)  # type: ignore[arg-type]


def test_cursor_items_round_trip_and_a_finished_sweep_clears_the_position() -> None:
    client = StubClient({})
    store = DynamoCursorStore(client, "t", epoch=lambda: 1_000_000.0)  # type: ignore[arg-type]
    store.save("L1", Cursor("Cal7", 123))
    store.save("L2", None)
    first, second = client.puts
    assert first["id"] == {"S": "cursor#L1"} and first["calendarId"] == {"S": "Cal7"}
    assert first["startMs"] == {"N": "123"} and first["expiration"] == {"N": str(1_000_000 + 7 * 86_400)}
    assert "calendarId" not in second and second["completedAt"] == {"N": "1000000"}
    client.items = {p["id"]["S"]: p for p in client.puts}
    assert store.load(["L1", "L2", "L3"]) == {"L1": Cursor("Cal7", 123)}
