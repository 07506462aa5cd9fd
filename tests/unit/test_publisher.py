"""Publisher / SNS / SQS adapters with fake clients: tens, 256 KiB, only failed entries retried."""

from __future__ import annotations

from typing import Any

import pytest

from appointment_enricher.aws.publisher import (
    MAX_BATCH_BYTES,
    OutboundMessage,
    PermanentEntryError,
    Publisher,
    SnsDestination,
    SqsDestination,
    chunks,
)

ATTRS = {
    "eventType": "AppointmentUpdate",
    "locationId": "loc1",
    "calendarId": "cal1",
    "appointmentStatus": "confirmed",
    "schemaVersion": "1",
}


def msg(i: int, body: str = "{}", group: str = "appt") -> OutboundMessage:
    return OutboundMessage(
        entry_id=f"sqs-message-id-{i}", body=body, attributes=ATTRS, group_id=group, dedupe_id=f"wh-{i}"
    )


class FakeAws:
    """Fake SNS+SQS client: ``fail`` maps body -> number of calls that fail that entry."""

    def __init__(self, fail: dict[str, int] | None = None, sender_fault: bool = False) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.kwargs: list[dict[str, Any]] = []
        self.fail = dict(fail or {})
        self.sender_fault = sender_fault
        self.raise_next = 0

    def _answer(self, entries: list[dict[str, Any]], body_key: str) -> dict[str, Any]:
        self.calls.append(entries)
        if self.raise_next:
            self.raise_next -= 1
            raise RuntimeError("endpoint unreachable")
        ok, failed = [], []
        for e in entries:
            if self.fail.get(e[body_key], 0) > 0:
                self.fail[e[body_key]] -= 1
                failed.append({"Id": e["Id"], "Code": "InternalError", "SenderFault": self.sender_fault})
            else:
                ok.append({"Id": e["Id"], "MessageId": "x"})
        return {"Successful": ok, "Failed": failed}

    def publish_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.kwargs.append(kwargs)
        return self._answer(kwargs["PublishBatchRequestEntries"], "Message")

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.kwargs.append(kwargs)
        return self._answer(kwargs["Entries"], "MessageBody")


def publisher(*destinations: Any) -> Publisher:
    return Publisher(list(destinations), attempts=3, sleep=lambda _: None)


def test_publishes_in_tens() -> None:
    aws = FakeAws()
    failed = publisher(SnsDestination(aws, "arn:aws:sns:us-east-1:1:t")).publish(
        [msg(i, f'{{"n":{i}}}') for i in range(23)]
    )
    assert failed == {}
    assert [len(c) for c in aws.calls] == [10, 10, 3]
    assert [e["Message"] for c in aws.calls for e in c] == [f'{{"n":{i}}}' for i in range(23)]


def test_batches_also_respect_256_kib() -> None:
    big = [msg(i, "x" * 100_000) for i in range(5)]
    batches = list(chunks(big))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(sum(m.payload_bytes for m in b) <= MAX_BATCH_BYTES for b in batches)


def test_only_failed_entries_are_retried() -> None:
    aws = FakeAws(fail={"b3": 1, "b7": 2})
    failed = publisher(SqsDestination(aws, "https://sqs/q")).publish([msg(i, f"b{i}") for i in range(10)])
    assert failed == {}
    assert [[e["MessageBody"] for e in c] for c in aws.calls] == [
        [f"b{i}" for i in range(10)],
        ["b3", "b7"],
        ["b7"],
    ]


def test_entries_failing_every_attempt_are_reported() -> None:
    aws = FakeAws(fail={"b1": 99})
    failed = publisher(SnsDestination(aws, "arn:t")).publish([msg(0, "b0"), msg(1, "b1")])
    assert list(failed) == ["sqs-message-id-1"]
    assert failed["sqs-message-id-1"].startswith("sns InternalError")
    assert len(aws.calls) == 3


def test_sender_faults_are_not_resent() -> None:
    aws = FakeAws(fail={"b1": 99}, sender_fault=True)
    failed = publisher(SnsDestination(aws, "arn:t")).publish([msg(0, "b0"), msg(1, "b1")])
    assert list(failed) == ["sqs-message-id-1"]
    assert len(aws.calls) == 1


def test_a_raising_call_fails_that_batch_and_is_retried() -> None:
    aws = FakeAws()
    aws.raise_next = 1
    failed = publisher(SnsDestination(aws, "arn:t")).publish([msg(i, f"b{i}") for i in range(12)])
    assert failed == {}
    assert [len(c) for c in aws.calls] == [10, 2, 10]


def test_wire_entries_carry_attributes_and_safe_ids() -> None:
    aws = FakeAws()
    publisher(SnsDestination(aws, "arn:aws:sns:us-east-1:1:EnrichedTopic")).publish([msg(0), msg(1)])
    entries = aws.calls[0]
    assert [e["Id"] for e in entries] == ["m0", "m1"]
    assert entries[0]["MessageAttributes"] == {
        name: {"DataType": "String", "StringValue": value} for name, value in ATTRS.items()
    }
    assert "MessageGroupId" not in entries[0] and "MessageDeduplicationId" not in entries[0]


@pytest.mark.parametrize(
    "destination",
    [
        lambda aws: SnsDestination(aws, "arn:aws:sns:us-east-1:1:EnrichedTopic.fifo"),
        lambda aws: SqsDestination(aws, "https://sqs.us-east-1.amazonaws.com/1/EnrichedQueue.fifo"),
    ],
    ids=["sns", "sqs"],
)
def test_fifo_destinations_get_group_and_dedupe_ids(destination: Any) -> None:
    aws = FakeAws()
    publisher(destination(aws)).publish([msg(0, group="apptA"), msg(1, group="apptB")])
    entries = aws.calls[0]
    assert [(e["MessageGroupId"], e["MessageDeduplicationId"]) for e in entries] == [
        ("apptA", "wh-0"),
        ("apptB", "wh-1"),
    ]


def test_empty_attribute_values_are_left_out() -> None:
    aws = FakeAws()
    m = OutboundMessage("id", "{}", {**ATTRS, "calendarId": ""}, "g", "d")
    publisher(SnsDestination(aws, "arn:t")).publish([m])
    assert "calendarId" not in aws.calls[0][0]["MessageAttributes"]


def test_a_record_failing_the_first_destination_is_not_sent_to_the_second() -> None:
    sns, sqs = FakeAws(fail={"b1": 99}), FakeAws()
    failed = publisher(SnsDestination(sns, "arn:t"), SqsDestination(sqs, "https://q")).publish(
        [msg(0, "b0"), msg(1, "b1")]
    )
    assert list(failed) == ["sqs-message-id-1"]
    assert [e["MessageBody"] for e in sqs.calls[0]] == ["b0"]


def test_needs_a_destination() -> None:
    with pytest.raises(ValueError):
        Publisher([])


def test_no_retry_and_no_next_destination_once_time_is_up() -> None:
    """The first call is the round's (checked before it); a retry or the second destination's call
    starts only while ``time_left()``; what is pending then fails at once, retryable."""
    sns, sqs = FakeAws(fail={"b1": 99}), FakeAws()
    failed = publisher(SnsDestination(sns, "arn:t"), SqsDestination(sqs, "https://q")).publish(
        [msg(0, "b0"), msg(1, "b1")], time_left=lambda: False
    )
    assert len(sns.calls) == 1 and sqs.calls == []
    assert set(failed) == {"sqs-message-id-0", "sqs-message-id-1"}
    assert (
        failed["sqs-message-id-1"].startswith("sns DeadlineReached")
        and "InternalError" in failed["sqs-message-id-1"]
    )
    assert failed["sqs-message-id-0"].startswith("sqs DeadlineReached")
    assert not any(isinstance(reason, PermanentEntryError) for reason in failed.values())


def test_a_publish_attempt_fits_in_the_default_publish_reserve() -> None:
    """An attempt started at the last moment must end with time left for the settling writes."""
    from appointment_enricher.aws.sdk import PUBLISH_ATTEMPT_SECONDS, PUBLISH_CONFIG  # noqa: PLC0415
    from appointment_enricher.enrich.service import (  # noqa: PLC0415
        DEADLINE_MARGIN_SECONDS,
        PUBLISH_RESERVE_SHARE,
    )

    assert PUBLISH_CONFIG.retries == {"mode": "standard", "total_max_attempts": 1}  # the publisher retries
    assert PUBLISH_CONFIG.connect_timeout + PUBLISH_CONFIG.read_timeout == PUBLISH_ATTEMPT_SECONDS
    assert DEADLINE_MARGIN_SECONDS * PUBLISH_RESERVE_SHARE - PUBLISH_ATTEMPT_SECONDS >= 1.0
