"""What every handler sets on the AWS and HTTP SDKs: client timeouts/retries and logger levels.

One place, so the receiver, the enricher and any later handler (a reconciler) agree:

* every boto3 client gets explicit connect/read timeouts and the ``standard`` retry mode
  (botocore's default ``legacy`` mode has no timeouts of ours and retries fewer error codes);
* the SDK loggers are pinned at INFO or above. With ``LogLevel=DEBUG`` the Lambda runtime puts the
  root logger at DEBUG, and botocore then logs whole response bodies, e.g. Secrets Manager's
  ``SecretString`` (the PowerLeads token, the OAuth client secret, a rotated refresh token).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.config import Config

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

# The receiver: short timeouts, two attempts in all; its own send deadline is the hard bound.
INTAKE_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 2},
    tcp_keepalive=True,
)
# The enricher: a few attempts (throttling included) well inside its 60 s budget. botocore's
# ``max_attempts`` counts retries: 3 means 4 attempts in all.
BACKEND_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
    tcp_keepalive=True,
)
# The enricher's publish calls (SNS PublishBatch, SQS SendMessageBatch): one attempt each, at
# most 1 s connect + 2 s read (``PUBLISH_ATTEMPT_SECONDS``). The retries are the publisher's own
# (``aws.publisher.Publisher``), which starts none once the batch deadline is near: SDK retries
# would not know the deadline, and could outlast the Lambda timeout after a publish, before the
# ledger announce and the receipts.
PUBLISH_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 1},
    tcp_keepalive=True,
)
PUBLISH_ATTEMPT_SECONDS = 3.0  # PUBLISH_CONFIG's connect + read timeouts: the longest attempt
# Operator tools (plenrich): long polls of up to 20 s must fit inside the read timeout.
OPERATOR_CONFIG = Config(
    connect_timeout=3,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 5},
)

# Loggers that log request or response bodies or headers at DEBUG.
SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "aws_xray_sdk")


def quiet_sdk_loggers() -> None:
    """Pin the SDK loggers at INFO or above, whatever the root level (call at cold start)."""
    for name in SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        sdk_logger.setLevel(max(logging.INFO, sdk_logger.level))


def sqs_client(config: Config = BACKEND_CONFIG, region_name: str | None = None) -> SQSClient:
    """SQS has no cut model (the floor's client, and used off the hot path): the session's loader
    falls back to botocore's own."""
    return product_session().client("sqs", config=config, region_name=region_name)


@functools.cache
def product_session() -> boto3.Session:
    """The one session of the enricher's and the reconciler's clients (a second session would
    set itself up again): its loader reads the cut service models in ``aws/models`` before
    botocore's own (see ``aws/service_models.py``). Other sessions, boto3's default included,
    keep the full models."""
    import boto3  # noqa: PLC0415
    import botocore.session  # noqa: PLC0415

    from .service_models import MODELS_DIR  # noqa: PLC0415

    core = botocore.session.get_session()
    paths = [str(MODELS_DIR), core.get_config_variable("data_path")]  # then AWS_DATA_PATH, if set
    core.set_config_variable("data_path", os.pathsep.join(p for p in paths if p))
    return boto3.Session(botocore_session=core)


def sns_client(config: Config = BACKEND_CONFIG) -> SNSClient:
    client = product_session().client("sns", config=config)
    client.meta.events.register("before-sign.sns", encode_form_once)
    return client


def encode_form_once(request: Any, **_: Any) -> None:
    """Url-encode a query-protocol body (SNS) once, before it is signed.

    botocore keeps the body as a dict and encodes it each time it is read: once for the
    signature, once more to send it. A ``PublishBatch`` of ten records spends about a quarter of
    its client CPU on that (2.4 -> 1.8 ms, measured 2026-12-07). ``before-sign`` is botocore's
    hook for changing a request before signing; the encoded bytes go out as they are (the
    serializer has already set the form content type).
    """
    if isinstance(request.data, dict):
        request.data = request.body


def dynamodb_client() -> DynamoDBClient:
    return product_session().client("dynamodb", config=BACKEND_CONFIG)


def secretsmanager_client() -> SecretsManagerClient:
    return product_session().client("secretsmanager", config=BACKEND_CONFIG)


class LazyClient:
    """A client made on its first use, for calls a container may never make (the enricher's
    quarantine and hand-backs on SQS): each client made at cold start loads its service model
    (the SQS one ~5 ms). Written by hand: boto3 has no lazy client. One lock, so two threads
    never make it twice; every client a container uses at once is made at init, so no other
    thread is making one from the same session (``product_session``) meanwhile."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def made(self) -> bool:
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return getattr(client, name)
