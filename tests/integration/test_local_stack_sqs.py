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


def test_delays_visibility_and_long_polls_keep_their_rules(moto_server: str) -> None:
    """The cheaper scans (``_patch_moto_sqs_scans``): a delayed message and one in flight are not
    received, one whose visibility lapsed is, and a waiting long poll is woken by a send."""
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    sqs = aws_client("sqs", moto_server)
    url = sqs.create_queue(QueueName=f"scans-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.send_message(QueueUrl=url, MessageBody="now")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
    assert [m["Body"] for m in got] == ["now"]  # the delayed one is not visible
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)  # in flight
    polled: list[Any] = []
    poll = threading.Thread(
        target=lambda: polled.append(
            sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=10)
        )
    )
    started = time.monotonic()
    poll.start()
    time.sleep(0.2)
    aws_client("sqs", moto_server).send_message(QueueUrl=url, MessageBody="woken")
    poll.join(15)
    bodies = sorted(m["Body"] for m in polled[0]["Messages"])
    assert "woken" in bodies and "later" not in bodies
    assert time.monotonic() - started < 5  # woken by the send, not at the end of the poll


def test_moto_dispatch_remembers_each_hosts_backend(moto_server: str) -> None:
    """``_patch_moto_dispatch``: every service the stack uses still reaches its own backend, and
    a host's backend is looked up once (moto lists its package directory on every lookup). A
    region no other test uses, so that these hosts are new to the process."""
    region = "ca-central-1"
    from unittest import mock  # noqa: PLC0415

    import moto.backends  # noqa: PLC0415

    def client(service: str) -> Any:
        return aws_client(service, moto_server, region)

    with mock.patch.object(
        moto.backends, "list_of_moto_modules", wraps=moto.backends.list_of_moto_modules
    ) as scan:
        for _ in range(3):
            assert client("sqs").list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert isinstance(client("dynamodb").list_tables()["TableNames"], list)
            assert isinstance(client("sns").list_topics()["Topics"], list)
            assert isinstance(client("secretsmanager").list_secrets()["SecretList"], list)
    assert 0 < scan.call_count <= 4  # once per host at most (this server's first calls), not per request
