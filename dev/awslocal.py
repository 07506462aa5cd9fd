"""Embedded AWS for the local stack: moto server over HTTP plus the resources template.yaml declares.

Dev only, never ships. The handlers talk to it over real HTTP through the standard
``AWS_ENDPOINT_URL`` override, exactly as they talk to AWS when deployed.

    python -m dev.awslocal            # run just the embedded AWS and print the contract env
    python -m dev.awslocal --export   # same, as `export NAME=value` lines for a shell
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from moto.server import ThreadedMotoServer

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS_DIR = REPO_ROOT / "dev" / "keys"

REGION = "us-east-1"
DUMMY_ACCESS_KEY = "testing"  # moto accepts any credentials
DUMMY_SECRET_KEY = "testing"  # noqa: S105
DEFAULT_POWERLEADS_API_BASE_URL = "https://services.leadconnectorhq.com"
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - the sandbox API's default accepted token
SERVICE_NAME = "appointment-enricher"

OutputMode = Literal["topic", "queue", "both"]
METRICS_NAMESPACE = "PowerLeadsEnricher"  # as template.yaml Globals


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


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start moto server in a daemon thread; returns the server and its endpoint URL.

    ``port=0`` picks a free port. Werkzeug's per-request access log is silenced.
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


@dataclass
class LocalStack:
    """Names, URLs and ARNs of the local resources, plus the env the handlers need."""

    endpoint_url: str
    region: str
    suffix: str
    ingest_queue_url: str
    ingest_queue_arn: str
    ingest_dlq_url: str
    ingest_dlq_arn: str
    quarantine_queue_url: str
    quarantine_queue_arn: str
    topic_arn: str
    enriched_queue_url: str
    enriched_queue_arn: str
    subscription_arn: str
    table_name: str
    token_secret_id: str
    powerleads_api_base_url: str = DEFAULT_POWERLEADS_API_BASE_URL
    server: ThreadedMotoServer | None = field(default=None, repr=False)
    # The stack's own clients' credentials (moto accepts any, unless it enforces IAM).
    access_key: tuple[str, str] = field(default=(DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY), repr=False)

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` pointed at this stack (untyped: tests use many services)."""
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key[0],
            aws_secret_access_key=self.access_key[1],
        )

    def env(
        self,
        powerleads_api_base_url: str | None = None,
        *,
        output_mode: OutputMode = "topic",
        **extra: str,
    ) -> dict[str, str]:
        """The runtime-contract env vars (DESIGN.md) for both handlers, plus ``extra``.

        ``output_mode`` mirrors the template's OutputMode: ``topic`` (default) sets only
        OUTPUT_TOPIC_ARN and records reach EnrichedQueue through the subscription; ``queue``
        sets only OUTPUT_QUEUE_URL; ``both`` sets both, so EnrichedQueue gets every record twice.
        """
        env = aws_base_env(self.endpoint_url, self.region)
        if output_mode in ("topic", "both"):
            env["OUTPUT_TOPIC_ARN"] = self.topic_arn
        if output_mode in ("queue", "both"):
            env["OUTPUT_QUEUE_URL"] = self.enriched_queue_url
        env.update(
            {
                "INGEST_QUEUE_URL": self.ingest_queue_url,
                "DEAD_LETTER_QUEUE_URL": self.quarantine_queue_url,
                "IDEMPOTENCY_TABLE_NAME": self.table_name,
                "POWERLEADS_API_BASE_URL": powerleads_api_base_url or self.powerleads_api_base_url,
                "POWERLEADS_TOKEN_SECRET_ID": self.token_secret_id,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here (template: EnableTracing)
                "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as the template's Globals set it
            }
        )
        env.update(dev_public_keys())
        env.update(extra)
        return env

    def apply_env(
        self,
        powerleads_api_base_url: str | None = None,
        *,
        output_mode: OutputMode = "topic",
        **extra: str,
    ) -> dict[str, str]:
        """Write :meth:`env` into ``os.environ`` (for a whole process, e.g. ``dev.run``)."""
        env = self.env(powerleads_api_base_url, output_mode=output_mode, **extra)
        for name in ("OUTPUT_TOPIC_ARN", "OUTPUT_QUEUE_URL"):
            if name not in env:
                os.environ.pop(name, None)  # one left over from the shell would double-publish
        os.environ.update(env)
        return env

    def set_token(self, token: str) -> None:
        """Replace the PowerLeads token held in the secret (plain token or the JSON form)."""
        self.client("secretsmanager").put_secret_value(SecretId=self.token_secret_id, SecretString=token)

    def purge(self) -> None:
        """Empty every queue of the stack (moto applies PurgeQueue at once)."""
        sqs = self.client("sqs")
        for url in (
            self.ingest_queue_url,
            self.ingest_dlq_url,
            self.quarantine_queue_url,
            self.enriched_queue_url,
        ):
            sqs.purge_queue(QueueUrl=url)

    def stop(self) -> None:
        """Stop the moto server if this stack owns it."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def create_resources(
    endpoint_url: str,
    *,
    suffix: str = "",
    region: str = REGION,
    visibility_timeout: int = 30,
    max_receive_count: int = 5,
    token: str = SANDBOX_TOKEN,
    powerleads_api_base_url: str = DEFAULT_POWERLEADS_API_BASE_URL,
    access_key: tuple[str, str] = (DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY),
) -> LocalStack:
    """Create the template's resources on a running moto server.

    ``suffix`` makes every name unique so tests can share one server without purging.
    ``access_key`` signs the calls (an admin's, when moto server enforces IAM).
    """
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "aws_access_key_id": access_key[0],
        "aws_secret_access_key": access_key[1],
    }
    sqs = boto3.client("sqs", **kwargs)
    sns = boto3.client("sns", **kwargs)
    ddb = boto3.client("dynamodb", **kwargs)
    secrets = boto3.client("secretsmanager", **kwargs)
    sfx = f"-{suffix}" if suffix else ""

    def queue_arn(url: str) -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        return attrs["QueueArn"]

    dlq_url = sqs.create_queue(
        QueueName=f"IngestDLQ{sfx}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    dlq_arn = queue_arn(dlq_url)
    ingest_url = sqs.create_queue(
        QueueName=f"IngestQueue{sfx}.fifo",
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "false",
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]
    quarantine_url = sqs.create_queue(QueueName=f"QuarantineQueue{sfx}")["QueueUrl"]
    enriched_url = sqs.create_queue(QueueName=f"EnrichedQueue{sfx}")["QueueUrl"]
    enriched_arn = queue_arn(enriched_url)

    topic_arn = sns.create_topic(Name=f"EnrichedTopic{sfx}")["TopicArn"]
    subscription_arn = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=enriched_arn,
        Attributes={"RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]

    table_name = f"IdempotencyTable{sfx}"
    ddb.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )

    secret_arn = secrets.create_secret(Name=f"powerleads/api-token{sfx}", SecretString=token)["ARN"]

    return LocalStack(
        endpoint_url=endpoint_url,
        region=region,
        suffix=suffix,
        ingest_queue_url=ingest_url,
        ingest_queue_arn=queue_arn(ingest_url),
        ingest_dlq_url=dlq_url,
        ingest_dlq_arn=dlq_arn,
        quarantine_queue_url=quarantine_url,
        quarantine_queue_arn=queue_arn(quarantine_url),
        topic_arn=topic_arn,
        enriched_queue_url=enriched_url,
        enriched_queue_arn=enriched_arn,
        subscription_arn=subscription_arn,
        table_name=table_name,
        token_secret_id=secret_arn,
        powerleads_api_base_url=powerleads_api_base_url,
        access_key=access_key,
    )


def unique_suffix() -> str:
    return uuid.uuid4().hex[:10]


def start_local_stack(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    visibility_timeout: int = 30,
    max_receive_count: int = 5,
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
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument("--powerleads-url", default=DEFAULT_POWERLEADS_API_BASE_URL)
    parser.add_argument("--token", default=os.environ.get("POWERLEADS_TOKEN", SANDBOX_TOKEN))
    parser.add_argument("--export", action="store_true", help="print `export` lines instead of JSON")
    args = parser.parse_args(argv)

    stack = start_local_stack(
        port=args.port,
        visibility_timeout=args.visibility_timeout,
        token=args.token,
        powerleads_api_base_url=args.powerleads_url,
    )
    print(format_env(stack.env(), export=args.export), flush=True)
    print(f"# moto server at {stack.endpoint_url}; Ctrl-C to stop", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
