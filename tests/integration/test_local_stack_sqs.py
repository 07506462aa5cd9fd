"""The local stack's moto SQS fixes (``dev/stack/awslocal.py``) over the wire: the queue counts
are computed only when asked, yet still exact, and the FIFO rules still hold."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dev.stack.awslocal import aws_client

pytestmark = pytest.mark.integration


def _fifo_queue(sqs: Any) -> str:
    url: str = sqs.create_queue(
        QueueName=f"counts-{uuid.uuid4().hex[:8]}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    return url


def test_queue_counts_stay_exact_and_fifo_deduplication_still_holds(moto_server: str) -> None:
    sqs = aws_client("sqs", moto_server)
    url = _fifo_queue(sqs)
    for n in range(3):
        sqs.send_message(
            QueueUrl=url, MessageBody=f"m{n}", MessageGroupId=f"g{n}", MessageDeduplicationId=f"d{n}"
        )
    sqs.send_message(QueueUrl=url, MessageBody="again", MessageGroupId="g0", MessageDeduplicationId="d0")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "2"  # the duplicate was dropped
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "0"
    assert attributes["FifoQueue"] == "true" and attributes["ContentBasedDeduplication"] == "false"
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    one = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert one == {"ApproximateNumberOfMessages": "3"}
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert sorted(bodies) == ["m0", "m1", "m2"]
