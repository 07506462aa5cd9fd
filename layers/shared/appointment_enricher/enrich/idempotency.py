"""Exactly-once effects per webhook: Powertools idempotency on DynamoDB, keyed by the dedupe id.

The enricher claims every message before it fetches or publishes (INPROGRESS, expiring with the
invocation), completes the claim after the record is published, and releases it when the record
fails or is quarantined so a retry or a redrive can finish the work. A delivery whose claim is
already COMPLETED publishes nothing.

We call the persistence layer's public ``save_inprogress`` / ``save_success`` / ``delete_record``
rather than ``@idempotent_function`` because the decorator wraps one call per record, and we
publish records ten at a time after a shared, coalesced fetch.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


class Claim(enum.Enum):
    NEW = "new"  # ours to process
    DONE = "done"  # already published: skip
    BUSY = "busy"  # another invocation holds it: retry later


class Idempotency(Protocol):
    def claim(self, dedupe_id: str, remaining_ms: int) -> Claim: ...
    def complete(self, dedupe_id: str, result: dict[str, Any]) -> None: ...
    def release(self, dedupe_id: str, reason: Exception) -> None: ...


@runtime_checkable
class BulkCompletion(Protocol):
    """An ``Idempotency`` that completes a batch's claims in one request (the ledger's receipts)."""

    def complete_all(self, results: Mapping[str, dict[str, Any]]) -> None: ...


class NoIdempotency:
    """``IDEMPOTENCY_TABLE_NAME`` unset: FIFO deduplication (5 minutes) is all there is."""

    def claim(self, dedupe_id: str, remaining_ms: int) -> Claim:
        return Claim.NEW

    def complete(self, dedupe_id: str, result: dict[str, Any]) -> None:
        return None

    def release(self, dedupe_id: str, reason: Exception) -> None:
        return None


class PowertoolsIdempotency:
    """DynamoDB table in Powertools' layout (key ``id``, TTL ``expiration``)."""

    def __init__(
        self, table_name: str, ttl_seconds: int, function_name: str = "enricher", client: Any = None
    ) -> None:
        """``client``: the container's DynamoDB client. Without one Powertools builds a new boto3
        Session, which re-reads botocore's data files (about 100 ms of cold start)."""
        from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415 - only when enabled
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
        )

        self._store = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        self._store.configure(
            IdempotencyConfig(
                event_key_jmespath="dedupeId",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=ttl_seconds,
                use_local_cache=False,
            ),
            function_name=function_name,
        )

    def claim(self, dedupe_id: str, remaining_ms: int) -> Claim:
        from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: PLC0415
            IdempotencyItemAlreadyExistsError,
            IdempotencyItemNotFoundError,
        )
        from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (  # noqa: PLC0415
            STATUS_CONSTANTS,
        )

        data = {"dedupeId": dedupe_id}
        try:
            self._store.save_inprogress(data=data, remaining_time_in_millis=remaining_ms)
        except IdempotencyItemAlreadyExistsError as exc:
            record = exc.old_data_record
            if record is None:
                try:
                    record = self._store.get_record(data=data)
                except IdempotencyItemNotFoundError:
                    return Claim.BUSY  # vanished between the two calls: let the retry decide
            if record is not None and record.status == STATUS_CONSTANTS["COMPLETED"]:
                return Claim.DONE
            return Claim.BUSY
        return Claim.NEW

    def complete(self, dedupe_id: str, result: dict[str, Any]) -> None:
        self._store.save_success(data={"dedupeId": dedupe_id}, result=result)

    def release(self, dedupe_id: str, reason: Exception) -> None:
        self._store.delete_record(data={"dedupeId": dedupe_id}, exception=reason)
