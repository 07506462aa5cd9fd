"""The local stack is the template: every queue, topic, subscription and table of template.yaml
exists on moto server with the template's attributes, read back over the wire.

The expectations are taken from the template here (not from dev/stack/awslocal.py's mappings), and a
mutated copy of the template proves the local stack follows a change with no edit to dev/.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dev.stack.awslocal import LocalStack, create_resources, unique_suffix
from dev.stack.cfn import Resolver, Template, load_template

pytestmark = pytest.mark.integration

# Template property -> how GetQueueAttributes reports it (same name; booleans as "true"/"false").
QUEUE_PROPERTIES = (
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
)


def as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def resolved_resources(stack: LocalStack, type_: str) -> dict[str, dict[str, Any]]:
    """Properties of the template's resources of ``type_`` that exist under the stack's parameters."""
    resolver = Resolver(stack.template, stack.parameters, stack.physical)
    return {
        logical_id: resolver.resolve(resource.get("Properties") or {})
        for logical_id, resource in stack.template["Resources"].items()
        if resource["Type"] == type_ and resolver.included(resource)
    }


def check_queues(stack: LocalStack) -> None:
    sqs = stack.client("sqs")
    queues = resolved_resources(stack, "AWS::SQS::Queue")
    assert queues, "the template has no queue?"
    for logical_id, props in queues.items():
        url = stack.ref(logical_id)
        assert stack.suffix in url and url.endswith(".fifo") == bool(props.get("FifoQueue")), url
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for name in QUEUE_PROPERTIES:
            if name in props:
                assert attrs.get(name) == as_text(props[name]), (logical_id, name, attrs.get(name))
        if "RedrivePolicy" in props:
            redrive = json.loads(attrs["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"] == props["RedrivePolicy"]["deadLetterTargetArn"]
            assert int(redrive["maxReceiveCount"]) == int(props["RedrivePolicy"]["maxReceiveCount"])
        else:
            assert "RedrivePolicy" not in attrs, logical_id


def check_topics_and_subscriptions(stack: LocalStack) -> None:
    sns = stack.client("sns")
    for logical_id in resolved_resources(stack, "AWS::SNS::Topic"):
        arn = stack.ref(logical_id)
        assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["TopicArn"] == arn
    subscriptions = resolved_resources(stack, "AWS::SNS::Subscription")
    for logical_id, props in subscriptions.items():
        attrs = sns.get_subscription_attributes(SubscriptionArn=stack.ref(logical_id))["Attributes"]
        assert attrs["TopicArn"] == props["TopicArn"], logical_id
        assert attrs["Protocol"] == props["Protocol"] == "sqs", logical_id
        assert attrs["Endpoint"] == props["Endpoint"], logical_id
        assert attrs.get("RawMessageDelivery", "false") == as_text(props.get("RawMessageDelivery", False))
        if "FilterPolicy" in props:
            assert json.loads(attrs["FilterPolicy"]) == props["FilterPolicy"], logical_id


def check_tables(stack: LocalStack) -> None:
    ddb = stack.client("dynamodb")
    tables = resolved_resources(stack, "AWS::DynamoDB::Table")
    assert tables, "the template has no table?"
    for logical_id, props in tables.items():
        table = ddb.describe_table(TableName=stack.ref(logical_id))["Table"]
        assert table["KeySchema"] == props["KeySchema"], logical_id
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            props["AttributeDefinitions"], key=str
        )
        billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
        assert billing == props.get("BillingMode", "PROVISIONED"), logical_id
        ttl = ddb.describe_time_to_live(TableName=stack.ref(logical_id))["TimeToLiveDescription"]
        wanted = props.get("TimeToLiveSpecification") or {}
        if wanted.get("Enabled"):
            assert ttl["TimeToLiveStatus"] == "ENABLED", logical_id
            assert ttl["AttributeName"] == wanted["AttributeName"], logical_id
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED", logical_id


def check_everything_created(stack: LocalStack) -> None:
    """Every queue, topic, subscription and table the template creates under these parameters."""
    for type_ in ("AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::DynamoDB::Table"):
        assert set(resolved_resources(stack, type_)) == set(stack.of_type(type_)), type_


def check_all(stack: LocalStack) -> None:
    check_everything_created(stack)
    check_queues(stack)
    check_topics_and_subscriptions(stack)
    check_tables(stack)


def test_local_stack_has_the_templates_resources(local_stack: LocalStack) -> None:
    check_all(local_stack)
    # The resources the product reads by name, as the template wires them.
    env = local_stack.env()
    assert env["INGEST_QUEUE_URL"] == local_stack.ref("IngestQueue")
    assert env["QUARANTINE_QUEUE_URL"] == local_stack.ref("QuarantineQueue")
    assert env["IDEMPOTENCY_TABLE_NAME"] == local_stack.ref("IdempotencyTable")
    assert env["OUTPUT_TOPIC_ARN"] == local_stack.ref("EnrichedTopic") and "OUTPUT_QUEUE_URL" not in env


def test_a_records_path_through_the_subscription(local_stack: LocalStack) -> None:
    """The subscription delivers raw messages from the topic to the queue, as deployed."""
    local_stack.client("sns").publish(TopicArn=local_stack.topic_arn, Message='{"hello":1}')
    sqs = local_stack.client("sqs")
    messages = sqs.receive_message(QueueUrl=local_stack.enriched_queue_url, WaitTimeSeconds=1).get("Messages")
    assert messages and messages[0]["Body"] == '{"hello":1}'


def test_the_local_stack_follows_a_changed_template(moto_server: str, tmp_path: Path) -> None:
    changed: Template = copy.deepcopy(load_template())
    resources = changed["Resources"]
    resources["IngestQueue"]["Properties"]["VisibilityTimeout"] = 123
    resources["IngestQueue"]["Properties"]["DeduplicationScope"] = "queue"
    resources["IngestQueue"]["Properties"]["FifoThroughputLimit"] = "perQueue"
    resources["LedgerTable"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
        },
    }
    resources["AuditQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "VisibilityTimeout": 45,
            "MessageRetentionPeriod": {"Ref": "DeadLetterRetentionPeriod"},
        },
    }
    resources["AuditSubscription"] = {
        "Type": "AWS::SNS::Subscription",
        "Properties": {
            "TopicArn": {"Ref": "EnrichedTopic"},
            "Protocol": "sqs",
            "Endpoint": {"Fn::GetAtt": ["AuditQueue", "Arn"]},
            "FilterPolicy": {"eventType": ["AppointmentDelete"]},
        },
    }
    path = tmp_path / "template.json"
    path.write_text(json.dumps(changed))

    stack = create_resources(moto_server, suffix=unique_suffix(), template_path=path)

    check_all(stack)
    attrs = stack.client("sqs").get_queue_attributes(QueueUrl=stack.ingest_queue_url, AttributeNames=["All"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "123"
    assert attrs["Attributes"]["DeduplicationScope"] == "queue"
    assert {"LedgerTable", "AuditQueue", "AuditSubscription"} <= set(stack.physical)


def test_conditions_and_parameters_choose_what_exists(moto_server: str) -> None:
    """OutputMode=queue: the template drops the subscription, and so does the local stack."""
    stack = create_resources(
        moto_server, suffix=unique_suffix(), parameters={"OutputMode": "queue", "IngestMaxReceiveCount": 7}
    )
    check_all(stack)
    assert "EnrichedQueueSubscription" not in stack.physical
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.ingest_queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 7


def test_an_unknown_resource_type_stops_with_a_clear_error(moto_server: str, tmp_path: Path) -> None:
    changed = load_template()
    changed["Resources"]["Bucket"] = {"Type": "AWS::S3::Bucket", "Properties": {}}
    path = tmp_path / "template.json"
    path.write_text(json.dumps(changed))
    with pytest.raises(ValueError, match=r"AWS::S3::Bucket.*SKIPPED_TYPES"):
        create_resources(moto_server, suffix=unique_suffix(), template_path=path)
