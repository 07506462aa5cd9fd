"""A Lambda context object for invoking handlers locally (dev only).

Carries what the Python runtime's context carries and what Powertools reads in
``inject_lambda_context`` (function_name, memory_limit_in_mb, invoked_function_arn,
aws_request_id) plus a real deadline behind ``get_remaining_time_in_millis()``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 256
    timeout_seconds: float = 30.0
    function_version: str = "$LATEST"
    region: str = REGION
    account_id: str = ACCOUNT_ID
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    deadline_monotonic: float = 0.0

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            day = time.strftime("%Y/%m/%d", time.gmtime())
            self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"
        if not self.deadline_monotonic:
            self.deadline_monotonic = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))

    @property
    def timed_out(self) -> bool:
        return time.monotonic() > self.deadline_monotonic


def make_context(
    function_name: str, *, timeout_seconds: float = 30.0, memory_limit_in_mb: int = 256
) -> LambdaContext:
    """A fresh context per invocation: new request id, deadline ``timeout_seconds`` from now."""
    return LambdaContext(
        function_name=function_name,
        timeout_seconds=timeout_seconds,
        memory_limit_in_mb=memory_limit_in_mb,
    )
