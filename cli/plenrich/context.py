"""What every command shares: exit codes, the usage error, and the environment a command may touch."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

OK, PARTIAL, USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad flags or configuration: exit 2."""


@dataclass
class Env:
    """What a command may touch; tests inject fakes for time and I/O."""

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    sqs_factory: Callable[[argparse.Namespace], Any] | None = None

    def sqs(self, args: argparse.Namespace) -> Any:
        if self.sqs_factory is not None:
            return self.sqs_factory(args)
        return aws_client("sqs", args)

    def dynamodb(self, args: argparse.Namespace) -> Any:
        return aws_client("dynamodb", args)


def aws_client(service: str, args: argparse.Namespace) -> Any:
    """A boto3 client with the operator tools' timeouts and retries (``appointment_enricher.aws.sdk``)."""
    import boto3  # noqa: PLC0415 - keeps `--help` fast

    from appointment_enricher.aws.sdk import OPERATOR_CONFIG  # noqa: PLC0415 - imports botocore

    options = {k: v for k, v in (("endpoint_url", args.endpoint_url), ("region_name", args.region)) if v}
    return boto3.client(service, config=OPERATOR_CONFIG, **options)  # type: ignore[call-overload]


def aws_endpoint(args: argparse.Namespace) -> str | None:
    """The AWS endpoint a command talks to (``--endpoint-url``, else ``AWS_ENDPOINT_URL``), for messages."""
    return getattr(args, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL")


def required(value: str | None, flag: str, variable: str) -> str:
    if not value:
        raise UsageError(f"{flag} or {variable} is required")
    return value
