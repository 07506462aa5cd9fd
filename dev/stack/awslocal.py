"""Embedded AWS for the local stack: moto server over HTTP plus the resources template.yaml declares.

Dev only, never ships. The handlers talk to it over real HTTP through the standard
``AWS_ENDPOINT_URL`` override, exactly as they talk to AWS when deployed.

The resources are built from ``template.yaml`` itself (``dev.stack.cfn``), generically by resource
type: every queue, topic, SQS subscription, table, queue policy and secret of the template is
created on moto server under a unique name suffix, with the template's properties resolved for
the chosen parameter values and conditions, so a queue or table added to the template appears
here with no change to this file. Types the local stack has no use for (functions, APIs, logs,
alarms, ...) are skipped by name in ``SKIPPED_TYPES``; any other type stops with an error until
it is listed in one or the other. The handlers' environment is the template's too: Globals plus
each function's ``Environment.Variables``, resolved against the local resources.

Local parameter values (``LocalStack.parameters``): tracing off (no X-Ray daemon), the dev
webhook keys, the sandbox (or given) PowerLeads URL, and the token secret, which the template
expects to exist already (created here with the token given). ``visibility_timeout`` overrides
the ingest queue's for tests that wait for redeliveries; nothing else differs from the template.

    python -m dev.stack.awslocal            # run just the embedded AWS and print the contract env
    python -m dev.stack.awslocal --export   # same, as `export NAME=value` lines for a shell
    python -m dev.stack.awslocal --bare     # moto server alone: prints its URL (the soak's AWS process)
"""

from __future__ import annotations

import argparse
import copy
import graphlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3

from appointment_enricher.wire import DEFAULT_API_BASE_URL
from dev.stack.cfn import (
    TEMPLATE_PATH,
    Physical,
    Resolver,
    Template,
    TemplateError,
    load_template,
    references,
    text,
)
from dev.stack.keepalive import KeepAliveMotoServer
from dev.stack.sqs import drain

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS_DIR = REPO_ROOT / "dev" / "keys"

REGION = "us-east-1"
DUMMY_ACCESS_KEY = "testing"  # moto accepts any credentials
DUMMY_SECRET_KEY = "testing"  # noqa: S105
DEFAULT_POWERLEADS_API_BASE_URL = DEFAULT_API_BASE_URL  # the product's default (wire)
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - the sandbox API's default accepted token
# The one resource the template expects to exist already (a parameter names it): created here.
TOKEN_SECRET_PARAMETER = "PowerLeadsTokenSecretName"  # noqa: S105 - a parameter name

OutputMode = Literal["topic", "queue", "both"]
LOG = logging.getLogger("dev.stack.awslocal")

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


# What neither moto nor the local stack needs: the gateway, poller and lambda_loader stand in for
# the functions, the API and the event sources; logs, alarms, dashboards and IAM have no local use.
def _names(text: str) -> list[str]:
    return text.split()


SKIPPED_TYPES = frozenset(
    [
        *FUNCTION_TYPES,
        *_names("AWS::Serverless::LayerVersion AWS::Serverless::HttpApi AWS::Serverless::Api"),
        *_names("AWS::Lambda::LayerVersion AWS::Lambda::Permission AWS::Lambda::EventSourceMapping"),
        *_names("AWS::Lambda::Url"),
        *_names("AWS::Logs::LogGroup AWS::Logs::MetricFilter AWS::SNS::TopicPolicy"),
        *_names("AWS::CloudWatch::Alarm AWS::CloudWatch::CompositeAlarm AWS::CloudWatch::Dashboard"),
        *_names("AWS::Scheduler::Schedule AWS::Scheduler::ScheduleGroup AWS::Events::Rule"),
        *_names("AWS::IAM::Role AWS::IAM::Policy AWS::IAM::ManagedPolicy"),
    ]
)
# Properties passed on as they are (booleans as "true"/"false", objects as JSON), by resource type.
QUEUE_ATTRIBUTES = _names(
    "FifoQueue ContentBasedDeduplication DeduplicationScope FifoThroughputLimit VisibilityTimeout "
    "MessageRetentionPeriod DelaySeconds MaximumMessageSize ReceiveMessageWaitTimeSeconds RedrivePolicy "
    "RedriveAllowPolicy SqsManagedSseEnabled KmsMasterKeyId KmsDataKeyReusePeriodSeconds"
)
TOPIC_ATTRIBUTES = _names("FifoTopic ContentBasedDeduplication KmsMasterKeyId DisplayName")
SUBSCRIPTION_ATTRIBUTES = _names(
    "RawMessageDelivery FilterPolicy FilterPolicyScope RedrivePolicy DeliveryPolicy"
)


def _attributes(props: Mapping[str, Any], names: list[str]) -> dict[str, str]:
    return {
        name: json.dumps(props[name]) if isinstance(props[name], dict) else text(props[name])
        for name in names
        if name in props
    }


def aws_base_env(endpoint_url: str, region: str = REGION) -> dict[str, str]:
    """Endpoint override, dummy credentials and region: enough for boto3 to reach moto server."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


def dev_public_keys() -> dict[str, str]:
    """The dev webhook verification keys, as the contract's env vars (PEM text)."""
    return {
        "WEBHOOK_ED25519_PUBLIC_KEY": (KEYS_DIR / "ed25519-public.pem").read_text(),
        "WEBHOOK_RSA_PUBLIC_KEY": (KEYS_DIR / "rsa-public.pem").read_text(),
    }


def _patch_moto_sqs() -> None:
    """Two moto 5.2 SQS bugs that real SQS does not have, fixed for the local stack (dev only;
    nothing of this ships). Both were found by the soak with intake faults:

    * ``Queue.delete_message`` rebuilds the message list without the queue's lock, and
      ``add_message`` checks FIFO deduplication outside it; moto server answers on many threads,
      so a send racing a delete can be lost or duplicated. Both now hold the queue's (reentrant)
      lock.
    * FIFO order after a failed batch: when several in-flight messages of one group become visible
      again together, ``receive_message`` releases them from "pending" one at a time while it
      iterates, so the first (still counting its successors as pending) is skipped and a later
      one is delivered ahead of it. Real SQS hands the group out in order. Messages whose
      visibility has lapsed are now released from "pending" before the receive starts.
    """
    from moto.sqs.models import Queue, SQSBackend  # noqa: PLC0415

    if getattr(Queue, "_dev_patched", False):
        return
    add, delete, receive = Queue.add_message, Queue.delete_message, SQSBackend.receive_message

    def add_message(self: Any, message: Any) -> None:
        with self._messages_lock:
            add(self, message)

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            delete(self, receipt_handle)

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        with queue._messages_lock:
            now = _now_millis()
            for message in [m for m in queue.pending_messages if now > m.visible_at]:
                queue.pending_messages.discard(message)
        return receive(self, queue_name, *args, **kwargs)

    Queue.add_message = add_message  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    _patch_moto_sqs_scaling()
    Queue._dev_patched = True  # type: ignore[attr-defined]


# The queue attributes moto computes by scanning every message of the queue.
_COUNTED = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
    }
)


class _QueueAttributes(dict):  # type: ignore[type-arg]
    """A queue's attributes with the three message counts computed only when read (see below)."""

    def __init__(self, queue: Any, eager: dict[str, Any]) -> None:
        super().__init__(eager)
        self._queue: Any = queue

    def _counted(self) -> _QueueAttributes:
        if self._queue is not None:
            from moto.core.utils import camelcase_to_underscores  # noqa: PLC0415

            for name in _COUNTED:
                dict.__setitem__(self, name, getattr(self._queue, camelcase_to_underscores(name)))
            self._queue = None
        return self

    def get(self, key: Any, default: Any = None) -> Any:
        if key in _COUNTED:
            self._counted()
        return dict.get(self, key, default)

    def __getitem__(self, key: Any) -> Any:
        if key in _COUNTED:
            self._counted()
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in _COUNTED or dict.__contains__(self, key)

    def __iter__(self) -> Any:
        return dict.__iter__(self._counted())

    def __len__(self) -> int:
        return dict.__len__(self._counted())

    def keys(self) -> Any:
        return dict.keys(self._counted())

    def values(self) -> Any:
        return dict.values(self._counted())

    def items(self) -> Any:
        return dict.items(self._counted())

    def copy(self) -> dict[str, Any]:
        return dict(self._counted().items())


def _now_millis() -> float:
    """moto SQS's clock (epoch milliseconds), as ``_patch_moto_sqs_scaling`` sets it."""
    return time.time() * 1000.0


def _patch_moto_sqs_scaling() -> None:
    """moto 5.2's SQS does work in proportion to the queue's depth on every call where real SQS
    does not, which made a backlog of a few thousand messages (the bulk soak) measure moto rather
    than the product: every ``SendMessage`` reads the queue's ``attributes`` three times (for
    ``ContentBasedDeduplication``) and each read counts every message three ways, and every
    visibility check builds a ``datetime``. The counts are now computed only when read
    (``GetQueueAttributes`` still answers them exactly), and moto's SQS clock is ``time.time()``
    (the same epoch milliseconds, without the ``datetime`` arithmetic). Also a race: the in-flight
    groups are read from a snapshot of the in-flight set."""

    import moto.sqs.models as sqs_models  # noqa: PLC0415

    Queue = sqs_models.Queue

    def attributes(self: Any) -> _QueueAttributes:
        from moto.core.utils import camelcase_to_underscores  # noqa: PLC0415

        names = [n for n in self.BASE_ATTRIBUTES if n not in _COUNTED]
        if self.fifo_queue:
            names += self.FIFO_ATTRIBUTES
        if self.kms_master_key_id:
            names += self.KMS_ATTRIBUTES
        eager = {name: getattr(self, camelcase_to_underscores(name)) for name in names}
        if self.policy:
            eager["Policy"] = self.policy
        if self.redrive_policy:
            eager["RedrivePolicy"] = json.dumps(self.redrive_policy)
        for key, value in eager.items():
            if isinstance(value, bool):
                eager[key] = str(value).lower()
        return _QueueAttributes(self, eager)

    Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]

    def pending_message_groups(self: Any) -> set[str]:
        # moto iterates the live set in Python while other request threads add and remove
        # messages ("Set changed size during iteration", a 500 seen with 20 consumers); the tuple
        # is taken in one C call, under the GIL.
        return {m.group_id for m in tuple(self._pending_messages) if m.group_id is not None}

    Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[assignment,method-assign]

    _patch_moto_sqs_scans(Queue)

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else original_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    original_unix_time = sqs_models.unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time = unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]


def _patch_moto_sqs_scans(Queue: Any) -> None:
    """The visible messages: moto scans every message of the queue with two clock reads each, on
    every receive and, for every long poll waiting, on every send (``wait_for_messages``'s
    predicate; a send wakes them all). With 20 consumers polling a queue of 1,600 messages in
    flight that is 20 x 2 scans of 0.24 ms per send, most of moto's one core during the bulk
    soak's sends; one clock read and plain comparisons make a scan 0.02 ms. Same rule as
    ``Message.visible`` and ``not Message.delayed``."""

    def messages(self: Any) -> list[Any]:
        now = _now_millis()
        return [m for m in self._messages if now > m.visible_at and now >= m.delayed_until]

    def any_visible(queue: Any) -> bool:
        now = _now_millis()
        return any(now > m.visible_at and now >= m.delayed_until for m in queue._messages)

    def wait_for_messages(self: Any, timeout: int) -> None:
        with self._messages_lock:
            self._messages_lock.wait_for(lambda: any_visible(self), timeout=timeout)

    Queue.messages = property(messages)
    Queue.wait_for_messages = wait_for_messages


def _patch_moto_dispatch() -> None:
    """moto server finds each request's backend from its host under one global lock, and for
    every request lists moto's package directory (``os.listdir`` and an ``isdir`` per entry, about
    150) before trying some 300 URL patterns: 0.7-0.8 ms per request, serialised across every
    request thread (the bulk soak's profile of moto showed a third of its samples waiting on that
    lock, and the bench's batch of ten pays it on each of its 25 calls). A host always maps to the
    same backend, so the answer is remembered per host (dev only; nothing of this ships)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: PLC0415

    if getattr(DomainDispatcherApplication, "_dev_patched", False):
        return
    find = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in found:
            found[host] = find(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    DomainDispatcherApplication._dev_patched = True  # type: ignore[attr-defined]


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[KeepAliveMotoServer, str]:
    """Start moto server in a daemon thread; returns the server and its endpoint URL.

    ``port=0`` picks a free port. Werkzeug's per-request access log is silenced.
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _patch_moto_sqs()
    _patch_moto_dispatch()
    server = KeepAliveMotoServer(ip_address=host, port=port)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


DUMMY_KEY_PAIR = (DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY)


def aws_client(
    service: str, endpoint_url: str, region: str = REGION, access_key: tuple[str, str] = DUMMY_KEY_PAIR
) -> Any:
    """A boto3 client for ``service`` on moto server (untyped: the dev tools use many services).

    ``access_key`` signs the calls: any pair works, unless moto server enforces IAM."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key[0],
        aws_secret_access_key=access_key[1],
    )


# ---- one builder per resource type --------------------------------------------------------------


@dataclass
class _Builder:
    """Creates resolved resources on moto server; each method returns what ``Ref``/``GetAtt`` read."""

    endpoint_url: str
    region: str
    suffix: str
    access_key: tuple[str, str] = DUMMY_KEY_PAIR
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = aws_client(service, self.endpoint_url, self.region, self.access_key)
        return self.clients[service]

    def name(self, logical_id: str, given: Any = None, *, fifo: bool = False) -> str:
        """The template's name (or the logical id) with the suffix, before any ``.fifo``."""
        base = str(given) if given else logical_id
        base = base.removesuffix(".fifo")
        sfx = f"-{self.suffix}" if self.suffix else ""
        return f"{base}{sfx}{'.fifo' if fifo else ''}"

    def queue(self, logical_id: str, props: dict[str, Any]) -> Physical:
        sqs = self.client("sqs")
        attributes = _attributes(props, QUEUE_ATTRIBUTES)
        fifo = attributes.get("FifoQueue") == "true"
        url = sqs.create_queue(
            QueueName=self.name(logical_id, props.get("QueueName"), fifo=fifo), Attributes=attributes
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Physical(
            logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueUrl": url, "QueueName": arn.split(":")[-1]}
        )

    def topic(self, logical_id: str, props: dict[str, Any]) -> Physical:
        sns = self.client("sns")
        attributes = _attributes(props, TOPIC_ATTRIBUTES)
        fifo = attributes.get("FifoTopic") == "true"
        arn = sns.create_topic(
            Name=self.name(logical_id, props.get("TopicName"), fifo=fifo), Attributes=attributes
        )["TopicArn"]
        for inline in props.get("Subscription") or []:
            self._subscribe(arn, inline)
        return Physical(
            logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": arn.split(":")[-1]}
        )

    def subscription(self, logical_id: str, props: dict[str, Any]) -> Physical | None:
        arn = self._subscribe(props["TopicArn"], props)
        return None if arn is None else Physical(logical_id, "AWS::SNS::Subscription", arn, {"Arn": arn})

    def _subscribe(self, topic_arn: str, props: Mapping[str, Any]) -> str | None:
        if props.get("Protocol") != "sqs":  # e-mail, Lambda, HTTP endpoints have no local receiver
            LOG.info("not subscribing %s endpoint locally", props.get("Protocol"))
            return None
        attributes = _attributes(props, SUBSCRIPTION_ATTRIBUTES)
        arn: str = self.client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return arn

    def table(self, logical_id: str, props: dict[str, Any]) -> Physical:
        ddb = self.client("dynamodb")
        name = self.name(logical_id, props.get("TableName"))
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in props:
                request[key] = props[key]
        if "StreamSpecification" in props:
            request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        if "SSESpecification" in props:
            sse = dict(props["SSESpecification"])
            request["SSESpecification"] = {"Enabled": bool(sse.pop("SSEEnabled", False)), **sse}
        table = ddb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        attributes = {"Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attributes["StreamArn"] = table["LatestStreamArn"]
        return Physical(logical_id, "AWS::DynamoDB::Table", name, attributes)

    def secret(self, logical_id: str, props: dict[str, Any]) -> Physical:
        value = props.get("SecretString")
        if value is None:  # GenerateSecretString: any random value does locally
            value = uuid.uuid4().hex
        arn = self.client("secretsmanager").create_secret(
            Name=self.name(logical_id, props.get("Name")), SecretString=value
        )["ARN"]
        return Physical(logical_id, "AWS::SecretsManager::Secret", arn, {"Id": arn})

    def queue_policy(self, logical_id: str, props: dict[str, Any]) -> Physical:
        for url in props.get("Queues") or []:
            self.client("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
        return Physical(logical_id, "AWS::SQS::QueuePolicy", f"{logical_id}-{self.suffix}")

    def builders(self) -> dict[str, Callable[[str, dict[str, Any]], Physical | None]]:
        return {
            "AWS::SQS::Queue": self.queue,
            "AWS::SNS::Topic": self.topic,
            "AWS::SNS::Subscription": self.subscription,
            "AWS::DynamoDB::Table": self.table,
            "AWS::SecretsManager::Secret": self.secret,
            "AWS::SQS::QueuePolicy": self.queue_policy,
        }


def creation_order(template: Template, resolver: Resolver, supported: set[str]) -> list[str]:
    """Logical ids to create (type supported, condition true), each after what it refers to."""
    resources = template.get("Resources") or {}
    unknown = sorted(
        {r.get("Type") for r in resources.values()} - supported - SKIPPED_TYPES,
        key=str,
    )
    if unknown:
        raise TemplateError(
            f"dev/stack/awslocal.py does not know the resource types {unknown}: add a builder, or list them "
            "in SKIPPED_TYPES if the local stack has no use for them"
        )
    wanted = {
        logical_id
        for logical_id, resource in resources.items()
        if resource.get("Type") in supported and resolver.included(resource)
    }
    graph = {
        logical_id: (
            set(references(resources[logical_id])) | set(_as_list(resources[logical_id].get("DependsOn")))
        )
        & wanted
        for logical_id in sorted(wanted)
    }
    return list(graphlib.TopologicalSorter(graph).static_order())


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---- the stack ----------------------------------------------------------------------------------


class _Ref:
    """``stack.ingest_queue_url`` and friends: the Ref (or one attribute) of a logical id."""

    def __init__(self, logical_id: str, attribute: str | None = None) -> None:
        self.logical_id, self.attribute = logical_id, attribute

    def __get__(self, stack: LocalStack, owner: object = None) -> str:
        resource = stack.physical[self.logical_id]
        return resource.ref if self.attribute is None else resource.attributes[self.attribute]


@dataclass
class LocalStack:
    """The template's resources on moto server (``physical``, by logical id) and the handlers' env."""

    endpoint_url: str
    region: str
    suffix: str
    template: Template = field(repr=False)
    parameters: dict[str, Any] = field(repr=False)
    physical: dict[str, Physical] = field(repr=False)
    token_secret_id: str
    server: KeepAliveMotoServer | None = field(default=None, repr=False)
    # The stack's own clients' credentials (moto accepts any, unless it enforces IAM).
    access_key: tuple[str, str] = field(default=DUMMY_KEY_PAIR, repr=False)

    # ---- names the rest of dev/ and the tests use ------------------------------------------

    def ref(self, logical_id: str) -> str:
        return self.physical[logical_id].ref

    ingest_queue_url = _Ref("IngestQueue")
    ingest_queue_arn = _Ref("IngestQueue", "Arn")
    ingest_dlq_url = _Ref("IngestDLQ")
    ingest_dlq_arn = _Ref("IngestDLQ", "Arn")
    quarantine_queue_url = _Ref("QuarantineQueue")
    quarantine_queue_arn = _Ref("QuarantineQueue", "Arn")
    topic_arn = _Ref("EnrichedTopic")
    enriched_queue_url = _Ref("EnrichedQueue")
    enriched_queue_arn = _Ref("EnrichedQueue", "Arn")
    subscription_arn = _Ref("EnrichedQueueSubscription")
    table_name = _Ref("IdempotencyTable")
    ledger_table_name = _Ref("LedgerTable")

    @property
    def powerleads_api_base_url(self) -> str:
        return str(self.parameters.get("PowerLeadsApiBaseUrl", DEFAULT_POWERLEADS_API_BASE_URL))

    def of_type(self, type_: str) -> dict[str, Physical]:
        return {k: v for k, v in self.physical.items() if v.type == type_}

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` pointed at this stack (untyped: tests use many services)."""
        return aws_client(service, self.endpoint_url, self.region, self.access_key)

    # ---- the handlers' environment ----------------------------------------------------------

    def resolver(self, **parameters: Any) -> Resolver:
        declared = self.template.get("Parameters") or {}
        given = {**self.parameters, **{k: v for k, v in parameters.items() if k in declared}}
        return Resolver(self.template, given, self.physical, region=self.region)

    def function_env(self, **parameters: Any) -> dict[str, str]:
        """Globals + every function's ``Environment.Variables``, resolved for these resources.

        A variable that refers to something not created locally (another function, the API) is
        left out, with a log line.
        """
        resolver = self.resolver(**parameters)
        glob = ((self.template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
        env: dict[str, str] = {}
        functions = [
            r for r in (self.template.get("Resources") or {}).values() if r.get("Type") in FUNCTION_TYPES
        ]
        for resource in (r for r in functions if resolver.included(r)):
            own = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
            for name, value in {**(glob.get("Variables") or {}), **own}.items():
                try:
                    resolved = resolver.resolve({name: value})
                except TemplateError as exc:
                    LOG.info("%s left out of the local env: %s", name, exc)
                    continue
                env.update({key: text(v) for key, v in resolved.items()})
        return env

    def env(
        self,
        powerleads_api_base_url: str | None = None,
        *,
        output_mode: OutputMode = "topic",
        **extra: str,
    ) -> dict[str, str]:
        """The runtime-contract env (docs/ARCHITECTURE.md) for the handlers, from the template, + ``extra``.

        ``output_mode`` is the template's OutputMode: ``topic`` (default) sets only
        OUTPUT_TOPIC_ARN and records reach EnrichedQueue through the subscription; ``queue``
        sets only OUTPUT_QUEUE_URL; ``both`` sets both, so EnrichedQueue gets every record twice.
        """
        base = {"PowerLeadsApiBaseUrl": powerleads_api_base_url} if powerleads_api_base_url else {}
        # Related entities are the template's default but opt-in locally (extra ENRICH_RELATED=...,
        # as ``dev.stack.run`` does), so a test's upstream request counts are the appointment's own.
        base["EnrichRelated"] = ""
        modes = ("queue", "topic") if output_mode == "both" else (output_mode,)
        env = aws_base_env(self.endpoint_url, self.region)
        for mode in modes:
            env.update(self.function_env(**base, OutputMode=mode))
        env.update(extra)
        return env

    def apply_env(
        self,
        powerleads_api_base_url: str | None = None,
        *,
        output_mode: OutputMode = "topic",
        **extra: str,
    ) -> dict[str, str]:
        """Write :meth:`env` into ``os.environ`` (for a whole process, e.g. ``dev.stack.run``)."""
        env = self.env(powerleads_api_base_url, output_mode=output_mode, **extra)
        for name in ("OUTPUT_TOPIC_ARN", "OUTPUT_QUEUE_URL"):
            if name not in env:
                os.environ.pop(name, None)  # one left over from the shell would double-publish
        os.environ.update(env)
        return env

    def set_token(self, token: str) -> None:
        """Replace the PowerLeads token held in the secret (plain token or the JSON form)."""
        self.client("secretsmanager").put_secret_value(SecretId=self.token_secret_id, SecretString=token)

    def drain(self, queue_url: str, wait_seconds: int = 1) -> list[dict[str, Any]]:
        """Receive and delete everything currently visible on ``queue_url`` (raw SQS messages)."""
        return drain(self.client("sqs"), queue_url, wait_seconds)

    def purge(self) -> None:
        """Empty every queue of the stack (moto applies PurgeQueue at once)."""
        sqs = self.client("sqs")
        for queue in self.of_type("AWS::SQS::Queue").values():
            sqs.purge_queue(QueueUrl=queue.ref)

    def stop(self) -> None:
        """Stop the moto server if this stack owns it."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def local_parameters(
    template: Template, *, suffix: str, powerleads_api_base_url: str, max_receive_count: int | None
) -> dict[str, Any]:
    """Parameter values for the local stack (only those the template declares)."""
    sfx = f"-{suffix}" if suffix else ""
    keys = dev_public_keys()
    wanted: dict[str, Any] = {
        "EnableTracing": "false",  # no X-Ray daemon here
        "WebhookEd25519PublicKey": keys["WEBHOOK_ED25519_PUBLIC_KEY"],
        "WebhookRsaPublicKey": keys["WEBHOOK_RSA_PUBLIC_KEY"],
        "PowerLeadsApiBaseUrl": powerleads_api_base_url,
        TOKEN_SECRET_PARAMETER: f"powerleads/api-token{sfx}",
    }
    if max_receive_count is not None:
        wanted["IngestMaxReceiveCount"] = max_receive_count
    declared = template.get("Parameters") or {}
    return {name: value for name, value in wanted.items() if name in declared}


def create_resources(
    endpoint_url: str,
    *,
    suffix: str = "",
    region: str = REGION,
    visibility_timeout: int | None = None,
    max_receive_count: int | None = None,
    token: str = SANDBOX_TOKEN,
    powerleads_api_base_url: str = DEFAULT_POWERLEADS_API_BASE_URL,
    template_path: Path = TEMPLATE_PATH,
    parameters: Mapping[str, Any] | None = None,
    access_key: tuple[str, str] = DUMMY_KEY_PAIR,
) -> LocalStack:
    """Create the template's resources on a running moto server.

    ``suffix`` makes every name unique so tests can share one server without purging.
    ``visibility_timeout`` overrides the ingest queue's (tests that wait for redeliveries);
    ``max_receive_count`` is the template's IngestMaxReceiveCount; ``parameters`` sets any other;
    ``access_key`` signs the calls (an admin's, when moto server enforces IAM).
    """
    template = load_template(template_path)
    if visibility_timeout is not None:
        template = copy.deepcopy(template)
        template["Resources"]["IngestQueue"]["Properties"]["VisibilityTimeout"] = visibility_timeout
    values = {
        **local_parameters(
            template,
            suffix=suffix,
            powerleads_api_base_url=powerleads_api_base_url,
            max_receive_count=max_receive_count,
        ),
        **(parameters or {}),
    }
    builder = _Builder(endpoint_url, region, suffix, access_key)
    physical: dict[str, Physical] = {}
    resolver = Resolver(template, values, physical, region=region)
    token_secret_id = ""
    if TOKEN_SECRET_PARAMETER in values:  # the template reads an existing secret: create it
        token_secret_id = str(values[TOKEN_SECRET_PARAMETER])
        builder.client("secretsmanager").create_secret(Name=token_secret_id, SecretString=token)
    build = builder.builders()
    resources = template.get("Resources") or {}
    for logical_id in creation_order(template, resolver, set(build)):
        resource = resources[logical_id]
        created = build[resource["Type"]](logical_id, resolver.resolve(resource.get("Properties") or {}))
        if created is not None:
            physical[logical_id] = created
    return LocalStack(
        endpoint_url=endpoint_url,
        region=region,
        suffix=suffix,
        template=template,
        parameters=values,
        physical=physical,
        token_secret_id=token_secret_id,
        access_key=access_key,
    )


def unique_suffix() -> str:
    return uuid.uuid4().hex[:10]


def start_local_stack(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    visibility_timeout: int | None = None,
    max_receive_count: int | None = None,
    token: str = SANDBOX_TOKEN,
    powerleads_api_base_url: str = DEFAULT_POWERLEADS_API_BASE_URL,
    set_os_environ: bool = False,
) -> LocalStack:
    """Start moto server and create the resources; ``stack.stop()`` shuts the server down."""
    server, endpoint_url = start_moto_server(host, port)
    try:
        stack = create_resources(
            endpoint_url,
            visibility_timeout=visibility_timeout,
            max_receive_count=max_receive_count,
            token=token,
            powerleads_api_base_url=powerleads_api_base_url,
        )
    except BaseException:
        server.stop()
        raise
    stack.server = server
    if set_os_environ:
        stack.apply_env()
    return stack


def format_env(env: Mapping[str, str], *, export: bool = False) -> str:
    if export:
        return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())
    return json.dumps(dict(env), indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the embedded AWS (moto server) with the stack's resources."
    )
    parser.add_argument("--port", type=int, default=0, help="moto server port (default: a free one)")
    parser.add_argument(
        "--visibility-timeout", type=int, default=None, help="ingest queue override (default: the template)"
    )
    parser.add_argument("--powerleads-url", default=DEFAULT_POWERLEADS_API_BASE_URL)
    parser.add_argument("--token", default=os.environ.get("POWERLEADS_TOKEN", SANDBOX_TOKEN))
    parser.add_argument("--export", action="store_true", help="print `export` lines instead of JSON")
    parser.add_argument(
        "--bare", action="store_true", help="no resources: print the URL; also stop when stdin closes"
    )
    args = parser.parse_args(argv)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    if args.bare:  # the soak's moto server process: its parent closes our stdin (or dies)
        server, url = start_moto_server(port=args.port)
        print(url, flush=True)

        def watch_stdin() -> None:
            sys.stdin.read()
            stopped.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        stop = server.stop
    else:
        stack = start_local_stack(
            port=args.port,
            visibility_timeout=args.visibility_timeout,
            token=args.token,
            powerleads_api_base_url=args.powerleads_url,
        )
        print(format_env(stack.env(), export=args.export), flush=True)
        print(f"# moto server at {stack.endpoint_url}; Ctrl-C to stop", flush=True)
        stop = stack.stop
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
