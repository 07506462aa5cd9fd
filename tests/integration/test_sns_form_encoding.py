"""The SNS client url-encodes a request body once (``aws.sdk.encode_form_once``), and what
arrives is what was published: special characters, unicode and message attributes intact."""

from __future__ import annotations

import json
from typing import Any

import botocore.awsrequest
import pytest

from appointment_enricher.aws.sdk import PUBLISH_CONFIG, sns_client
from dev.stack.awslocal import LocalStack, aws_client

pytestmark = pytest.mark.integration

TRICKY = {"title": 'Ann & "Bob" = 100% <ok>?', "notes": "café ☕ + line\nbreak", "id": "a/b c"}


def test_publish_batch_is_encoded_once_and_arrives_intact(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_stack.endpoint_url)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    sns = sns_client(PUBLISH_CONFIG)  # the product's client: its cut model only publishes
    admin, sqs = aws_client("sns", local_stack.endpoint_url), aws_client("sqs", local_stack.endpoint_url)
    topic = admin.create_topic(Name=f"encode-{local_stack.suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"encode-{local_stack.suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    admin.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )

    encoded: list[Any] = []
    real = botocore.awsrequest.urlencode

    def counting(*args: Any, **kwargs: Any) -> str:
        encoded.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(botocore.awsrequest, "urlencode", counting)
    entries = [
        {
            "Id": str(n),
            "Message": json.dumps({**TRICKY, "n": n}, ensure_ascii=False),
            "MessageAttributes": {"changeKind": {"DataType": "String", "StringValue": "créé & co"}},
        }
        for n in range(3)
    ]
    result = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
    assert len(result["Successful"]) == 3 and not result.get("Failed")
    assert len(encoded) == 1  # botocore alone would encode it twice: to sign, then to send

    got: list[dict[str, Any]] = []
    while len(got) < 3:
        got += sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
    bodies = sorted((json.loads(m["Body"]) for m in got), key=lambda b: b["n"])
    assert bodies == [{**TRICKY, "n": n} for n in range(3)]
    assert {m["MessageAttributes"]["changeKind"]["StringValue"] for m in got} == {"créé & co"}
