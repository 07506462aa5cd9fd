"""The reconciler's cursors, in the ledger table (``LEDGER_TABLE_NAME``, key ``id``, TTL
``expiration``), beside the ledger's own items (read through ``dynamo_ledger.DynamoLedger``).

``id = "cursor#<locationId>"``: where an unfinished sweep of that location resumes
(``calendarId``, ``startMs``); a finished sweep leaves ``completedAt`` and no position. The
reconciler may write only these items (the template's IAM condition on the key prefix).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..clocks import Epoch
from ..ledger.base import UnprocessedKeys
from .run import Cursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_GET_LIMIT = 100
CURSOR_TTL_SECONDS = 7 * 86_400  # a cursor older than a week is a sweep nobody resumes


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_get(
    client: DynamoDBClient,
    table: str,
    ids: Sequence[str],
    attributes: str,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Every item of ``ids`` that exists, 100 keys per call, unprocessed keys retried with backoff."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(list(dict.fromkeys(ids)), BATCH_GET_LIMIT):
        names = [a.strip() for a in attributes.split(",") if a.strip()]
        request: dict[str, Any] = {
            table: {
                "Keys": [{"id": {"S": i}} for i in chunk],
                "ProjectionExpression": ", ".join(f"#{a}" for a in names),
                "ExpressionAttributeNames": {f"#{a}": a for a in names},
            }
        }
        for attempt in range(8):
            response = client.batch_get_item(RequestItems=request)
            found.extend(response.get("Responses", {}).get(table, []))
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                break
            sleep(min(1.0, 0.05 * (2**attempt)))
        else:
            raise UnprocessedKeys(f"DynamoDB left {len(request[table]['Keys'])} keys unprocessed")
    return found


class DynamoCursorStore:
    """The reconciler's per-location cursors (``cursor#<locationId>`` items), PutItem only."""

    def __init__(self, client: DynamoDBClient, table: str, epoch: Epoch = time.time) -> None:
        self.client, self.table, self.epoch = client, table, epoch

    def load(self, location_ids: Sequence[str]) -> dict[str, Cursor]:
        items = batch_get(
            self.client, self.table, [f"cursor#{loc}" for loc in location_ids], "id, calendarId, startMs"
        )
        cursors: dict[str, Cursor] = {}
        for item in items:
            calendar = item.get("calendarId", {}).get("S")
            start = item.get("startMs", {}).get("N")
            if calendar and start is not None:
                cursors[item["id"]["S"].removeprefix("cursor#")] = Cursor(calendar, int(start))
        return cursors

    def save(self, location_id: str, cursor: Cursor | None) -> None:
        now = int(self.epoch())
        item: dict[str, Any] = {
            "id": {"S": f"cursor#{location_id}"},
            "updatedAt": {"N": str(now)},
            "expiration": {"N": str(now + CURSOR_TTL_SECONDS)},
        }
        if cursor is None:
            item["completedAt"] = {"N": str(now)}
        else:
            item["calendarId"] = {"S": cursor.calendar_id}
            item["startMs"] = {"N": str(cursor.start_ms)}
        self.client.put_item(TableName=self.table, Item=item)
