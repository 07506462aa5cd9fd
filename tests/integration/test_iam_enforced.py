"""Least privilege proven by running: each function's role, as SAM builds it, against moto's IAM.

template.yaml is translated with the SAM translator (``samtranslator``, as ``sam deploy`` does);
each function role's inline policies are resolved against a local stack and given to a moto IAM
user of its own. moto server, started with ``INITIAL_NO_AUTH_ACTION_COUNT``, then checks every
request's signature and the user's policies. The receiver, the enricher (OAuth secret read,
refresh lease and write-back, idempotency table, topic, quarantine) and ``plenrich redrive`` run
with exactly those credentials: the pipeline works, and without any one statement it does not.

What moto enforces (``moto/core/responses.py`` ``call_action``, ``moto/iam/access_control.py``):
every action of every service here is checked, but only SQS names the resource it is about
(``_determine_resource``); for SNS, DynamoDB and Secrets Manager moto asks about resource ``*``,
which no scoped statement matches. So SQS statements run as written (action *and* queue), and the
others run with their Resource widened to ``*`` (action only). Their resource scoping is checked
statically by ``tests/unit/test_template.py``. Conditions and resource policies (the TLS-only
queue/topic policies) are not evaluated by moto.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from appointment_enricher.ledger.dynamodb import settled_marks
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_handler
from dev.fakes.sandbox import Fault, SandboxServer
from dev.fakes.signing import make_webhook, signed_headers
from dev.stack.awslocal import REGION, LocalStack, create_resources
from dev.stack.cfn import Resolver
from dev.stack.poller import SqsPoller
from tests.conftest import CONTRACT_VARS, drain

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
LOCATION = "0007BWpSzSwfiuSl0tR2"
OK_ID = "Hc3Jd8Fe2Gh5Ki9Lm0Np"
REJECTED_ID = "Qa4Rb6Sc8Td0Ue2Vf4Wg"
DELETED_ID = "Zy1Xw3Vu5Ts7Rq9Po2Nm"
BATCH_NAMES = {
    "sns:Publish": "sns:PublishBatch",
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}

# What an operator needs for `plenrich redrive` (README, Operations): read and delete the
# quarantine, send to the ingest queue. Resolved like the template's statements.
REDRIVE_POLICY = [
    {
        "PolicyName": "ReadQuarantine",
        "PolicyDocument": {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    "Resource": {"Fn::GetAtt": ["QuarantineQueue", "Arn"]},
                }
            ]
        },
    },
    {
        "PolicyName": "RequeueToIngest",
        "PolicyDocument": {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sqs:SendMessage",
                    "Resource": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                }
            ]
        },
    },
]


# ----- the template as SAM deploys it --------------------------------------------------------


def translated_template() -> dict[str, Any]:
    """template.yaml through the SAM translator (local code paths stand in for packaged S3 URIs)."""
    from cfnlint.decode import decode  # noqa: PLC0415
    from samtranslator.translator.transform import transform  # noqa: PLC0415

    decoded, problems = decode(str(ROOT / "template.yaml"))
    assert not problems, problems
    template: dict[str, Any] = json.loads(json.dumps(decoded))
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://packaged/{properties[key]}"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION  # the translator needs a region for ARNs
    try:
        return dict(transform(template, {}, NoManagedPolicies()))
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def role_policies(template: dict[str, Any], role: str, resolver: Resolver) -> list[dict[str, Any]]:
    """The role's inline policies, resolved, as moto can evaluate them (see the module docstring)."""
    policies = resolver.resolve(template["Resources"][role]["Properties"]["Policies"])
    return [for_moto(policy) for policy in policies]


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    policy = copy.deepcopy(policy)
    for statement in policy["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        # AWS authorises a batch call with the single action's permission (there is no
        # sns:PublishBatch or sqs:DeleteMessageBatch IAM action); moto asks for the operation's name.
        statement["Action"] = [*actions, *(BATCH_NAMES[a] for a in actions if a in BATCH_NAMES)]
        if not all(action.startswith("sqs:") for action in actions):
            statement["Resource"] = "*"  # moto checks these services' actions against "*" only
    return policy


def _masked_in_moto(policy: dict[str, Any], others: list[dict[str, Any]]) -> bool:
    """True when, with resources widened to "*", the other statements grant all of its actions."""

    def actions(p: dict[str, Any]) -> set[str]:
        return {a for st in p["PolicyDocument"]["Statement"] for a in st["Action"]}

    granted = set().union(*(actions(o) for o in others)) if others else set()
    return (
        all(st["Resource"] == "*" for st in policy["PolicyDocument"]["Statement"])
        and actions(policy) <= granted
    )


def policy_labels(policies: list[dict[str, Any]]) -> list[str]:
    labels = []
    for policy in policies:
        statement = policy["PolicyDocument"]["Statement"][0]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        labels.append(statement.get("Sid") or actions[0])
    return labels


# ----- moto server with IAM on ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def iam_moto() -> Iterator[tuple[str, tuple[str, str]]]:
    """A moto server enforcing IAM after 3 unauthenticated calls, which create an admin user."""
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="AKIABOOTSTRAP",
            aws_secret_access_key="x",
        )
        iam.create_user(UserName="admin")  # unauthenticated call 1 of 3
        iam.put_user_policy(  # 2
            UserName="admin",
            PolicyName="admin",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]  # 3; from here on IAM is enforced
        yield url, (key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.terminate()
        server.wait(timeout=10)


def make_user(url: str, admin: tuple[str, str], policies: list[dict[str, Any]]) -> tuple[str, str]:
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=admin[0],
        aws_secret_access_key=admin[1],
    )
    name = f"user-{uuid.uuid4().hex[:12]}"
    iam.create_user(UserName=name)
    for policy in policies:
        iam.put_user_policy(
            UserName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps({"Version": "2012-10-17", **policy["PolicyDocument"]}),
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return translated_template()


@pytest.fixture
def stack(iam_moto: tuple[str, tuple[str, str]]) -> LocalStack:
    url, admin = iam_moto
    return create_resources(url, suffix=uuid.uuid4().hex[:10], access_key=admin)


@pytest.fixture
def output_mode() -> str:
    """The template's OutputMode (tests parametrize it)."""
    return "topic"


@pytest.fixture
def resolver(template: dict[str, Any], stack: LocalStack, output_mode: str) -> Resolver:
    # Deploy-like parameters: the exact secret ARN, an OAuth app (so the write-back is granted).
    parameters = {
        **stack.parameters,
        "PowerLeadsTokenSecretArn": stack.token_secret_id,
        "PowerLeadsTokenSecretIsOAuthApp": "true",
        "OutputMode": output_mode,
    }
    return Resolver(template, parameters, stack.physical, region=REGION, account_id=ACCOUNT)


@pytest.fixture
def function_env(
    stack: LocalStack, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, output_mode: str
) -> None:
    for name in CONTRACT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name, value in stack.env(
        sandbox.url,
        output_mode="queue" if output_mode == "queue" else "topic",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
    ).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def cold_start(name: str, key: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Load a handler whose boto3 clients sign with ``key`` (a fresh default session, as a new container)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key[1])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return load_handler(name)


# ----- the runs ---------------------------------------------------------------------------------


def receive(stack: LocalStack, key: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    webhook = cold_start("webhook", key, monkeypatch)
    statuses = []
    for kind, appointment in (
        ("AppointmentUpdate", OK_ID),
        ("AppointmentCreate", REJECTED_ID),
        ("AppointmentDelete", DELETED_ID),
    ):
        body = make_webhook(kind, {"id": appointment}, LOCATION)
        event = {
            "version": "2.0",
            "routeKey": "POST /webhooks/appointments",
            "rawPath": "/webhooks/appointments",
            "headers": signed_headers(body, "both"),
            "body": body.decode(),
            "isBase64Encoded": False,
        }
        statuses.append(webhook(event, make_context("WebhookFunction"))["statusCode"])
    return statuses


def oauth_secret(stack: LocalStack, sandbox: SandboxServer) -> str:
    client_id, secret, refresh = (f"{k}-{uuid.uuid4().hex[:8]}" for k in ("cid", "cs", "rt"))
    sandbox.add_oauth_client(client_id, secret, refresh, location_id=LOCATION)
    oauth = {"clientId": client_id, "clientSecret": secret, "refreshToken": refresh, "userType": "Location"}
    stack.set_token(json.dumps({"oauth": {**oauth, "locationId": LOCATION}}))
    return refresh


def enrich(
    stack: LocalStack, key: tuple[str, str], sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three webhooks queued (by the admin, standing in for the receiver), enriched with ``key``."""
    sqs = stack.client("sqs")
    for kind, appointment in (
        ("AppointmentUpdate", OK_ID),
        ("AppointmentCreate", REJECTED_ID),
        ("AppointmentDelete", DELETED_ID),
    ):
        body = make_webhook(kind, {"id": appointment}, LOCATION)
        dedupe = uuid.uuid4().hex
        message = {
            "body": body.decode(),
            "receivedAt": "2026-11-30T12:00:00Z",
            "dedupeId": dedupe,
            "signatures": {},
        }
        sqs.send_message(
            QueueUrl=stack.ingest_queue_url,
            MessageBody=json.dumps(message),
            MessageGroupId=appointment,
            MessageDeduplicationId=dedupe,
        )
    sandbox.queue_faults([Fault.error(422)], event_id=REJECTED_ID)
    enricher = cold_start("enricher", key, monkeypatch)
    # The poller is Lambda's event source mapping (its role has AWSLambdaSQSQueueExecutionRole).
    poller = SqsPoller(enricher, stack.ingest_queue_url, sqs_client=sqs, wait_time_seconds=0)
    for _ in range(3):
        if not poller.poll_once():
            break


def enriched_outcome(stack: LocalStack, refresh: str) -> dict[str, Any]:
    stored = json.loads(
        stack.client("secretsmanager").get_secret_value(
            SecretId=stack.token_secret_id, VersionStage="AWSCURRENT"
        )["SecretString"]
    )["oauth"]
    return {
        "records": len(drain(stack, stack.enriched_queue_url, wait_seconds=0)),
        "quarantined": len(drain(stack, stack.quarantine_queue_url, wait_seconds=0)),
        "rotated_saved": stored["refreshToken"] != refresh and "refreshLease" not in stored,
        # settled deliveries: the published ones marked in their ledger items by the announce
        # write (PutItem on the ledger), the quarantined one a receipt item (BatchWriteItem)
        "settled_in_ledger": sum(
            len(settled_marks(i.get("settled", {})))
            for i in stack.client("dynamodb").scan(TableName=stack.ledger_table_name)["Items"]
        ),
        "receipts": sum(
            i["id"]["S"].startswith("receipt#")
            for i in stack.client("dynamodb").scan(TableName=stack.table_name)["Items"]
        ),
    }


COMPLETE = {"records": 2, "quarantined": 1, "rotated_saved": True, "settled_in_ledger": 2, "receipts": 1}


def test_the_receiver_works_with_its_role_and_not_without_it(
    template: dict[str, Any],
    resolver: Resolver,
    stack: LocalStack,
    iam_moto: Any,
    function_env: None,
    monkeypatch,
) -> None:
    url, admin = iam_moto
    policies = role_policies(template, "WebhookFunctionRole", resolver)
    assert policy_labels(policies) == ["sqs:SendMessage*"]
    assert receive(stack, make_user(url, admin, policies), monkeypatch) == [202, 202, 202]
    # Without it nothing is queued: a retryable answer (never a 2xx that would lose the event).
    assert all(status in (429, 503) for status in receive(stack, make_user(url, admin, []), monkeypatch))


EXPECTED_STATEMENTS = {
    "topic": ["sns:Publish", "sqs:SendMessage*", "secretsmanager:GetSecretValue"],
    "queue": ["sqs:SendMessage*", "sqs:SendMessage*", "secretsmanager:GetSecretValue"],
}


# Used only when the upstream budget hands a message back (tests/integration/test_budget.py):
# the re-send before maxReceiveCount and the visibility change.
HAND_BACK_STATEMENTS = ["sqs:SendMessage*", "HandBackThrottled"]


@pytest.mark.parametrize("output_mode", ["topic", "queue"])
def test_the_enricher_works_with_exactly_its_role(
    output_mode: str,
    template: dict[str, Any],
    resolver: Resolver,
    stack: LocalStack,
    iam_moto: Any,
    sandbox: SandboxServer,
    function_env: None,
    monkeypatch,
) -> None:
    url, admin = iam_moto
    policies = role_policies(template, "EnricherFunctionRole", resolver)
    assert policy_labels(policies) == [
        *EXPECTED_STATEMENTS[output_mode],
        "IdempotencyRecords",
        "WriteBackRotatedPowerLeadsToken",
        "LedgerReadWrite",
        *HAND_BACK_STATEMENTS,
    ]
    refresh = oauth_secret(stack, sandbox)
    enrich(stack, make_user(url, admin, policies), sandbox, monkeypatch)
    assert enriched_outcome(stack, refresh) == COMPLETE
    assert sandbox.oauth_refresh_count >= 1


@pytest.mark.parametrize(
    ("output_mode", "missing"), [(mode, index) for mode in ("topic", "queue") for index in range(6)]
)
def test_the_enricher_needs_every_statement_of_its_role(
    output_mode: str,
    missing: int,
    template: dict[str, Any],
    resolver: Resolver,
    stack: LocalStack,
    iam_moto: Any,
    sandbox: SandboxServer,
    function_env: None,
    monkeypatch,
) -> None:
    url, admin = iam_moto
    policies = role_policies(template, "EnricherFunctionRole", resolver)
    assert len(policies) == 6 + len(HAND_BACK_STATEMENTS)
    kept = policies[:missing] + policies[missing + 1 :]
    if _masked_in_moto(policies[missing], kept):
        pytest.skip(
            f"{policy_labels([policies[missing]])[0]}: moto checks these actions against '*' only and "
            "another statement grants the same ones on its own table; the resource scoping of both "
            "is checked statically (tests/unit/test_template.py)"
        )
    refresh = oauth_secret(stack, sandbox)
    enrich(stack, make_user(url, admin, kept), sandbox, monkeypatch)
    assert enriched_outcome(stack, refresh) != COMPLETE


@pytest.mark.parametrize("missing", [None, "ReadQuarantine", "RequeueToIngest"])
def test_redrive_works_with_the_documented_operator_policy_and_needs_all_of_it(
    missing: str | None, resolver: Resolver, stack: LocalStack, iam_moto: Any
) -> None:
    from plenrich.context import Env  # noqa: PLC0415
    from plenrich.main import main  # noqa: PLC0415

    url, admin = iam_moto
    sqs = stack.client("sqs")
    letter = {
        "body": make_webhook("AppointmentUpdate", {"id": OK_ID}, LOCATION).decode(),
        "dedupeId": "d-1",
        "receivedAt": "2026-11-30T12:00:00Z",
        "signatures": {},
    }
    sqs.send_message(
        QueueUrl=stack.quarantine_queue_url,
        MessageBody=json.dumps(letter),
        MessageAttributes={"errorType": {"DataType": "String", "StringValue": "InvalidAppointment"}},
    )
    policies = [for_moto(resolver.resolve(p)) for p in REDRIVE_POLICY if p["PolicyName"] != missing]
    key = make_user(url, admin, policies)
    operator = boto3.client(
        "sqs", endpoint_url=url, region_name=REGION, aws_access_key_id=key[0], aws_secret_access_key=key[1]
    )
    out = []

    class Sink:
        def write(self, text: str) -> int:
            out.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    args = [
        "redrive",
        "--wait",
        "0",
        "--quarantine-url",
        stack.quarantine_queue_url,
        "--ingest-queue-url",
        stack.ingest_queue_url,
    ]
    try:
        main(args, Env(stdout=Sink(), stderr=Sink(), sqs_factory=lambda _: operator))  # type: ignore[arg-type]
    except ClientError as exc:
        out.append(f"redrive failed: {exc}")
    moved = drain(stack, stack.ingest_queue_url, wait_seconds=0)
    left = drain(stack, stack.quarantine_queue_url, wait_seconds=0)
    if missing is None:
        assert (len(moved), len(left)) == (1, 0), "".join(out)
    else:
        assert (len(moved), len(left)) != (1, 0), "".join(out)
