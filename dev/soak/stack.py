"""The soak's local stack, brought up in one call and torn down in reverse order.

``start_stack(config)`` yields a :class:`SoakStack`: the sandbox PowerLeads API, a moto server in its
own process with the template's resources, a FIFO mirror of the enricher's output, the collector
draining the output queues, ``config.workers`` enricher processes and the local gateway in front
of the in-process webhook handler (its SQS endpoint behind a fault proxy with ``intake_faults``).
A soak phase plans its traffic, serves it from ``stack.sandbox`` and sends to ``stack.webhook_url``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from dev.soak.collect import Collector
from dev.soak.config import SoakConfig
from dev.soak.faults import intake_environment
from dev.soak.processes import children, start_moto_process, start_worker_process


@dataclass
class SoakStack:
    sandbox: Any  # dev.fakes.sandbox.SandboxServer
    resources: Any  # dev.stack.awslocal's resources (queue URLs, clients, env)
    sqs: Any
    mirror_url: str
    env: dict[str, str]  # the enricher's runtime environment
    collector: Collector
    workers: list[subprocess.Popen[str]]
    gateway: Any  # dev.stack.gateway.Gateway
    proxy: Any  # dev.fakes.faultproxy.FaultProxy with intake faults, else None
    log_path: Path  # the enricher processes' log

    @property
    def webhook_url(self) -> str:
        return str(self.gateway.webhook_url)

    def dead_workers(self) -> list[int | None]:
        return [w.returncode for w in self.workers if w.poll() is not None]


def create_fifo_queue(sqs: Any, name: str) -> str:
    """A FIFO queue (explicit deduplication ids) for the enricher's ``OUTPUT_QUEUE_URL`` mirror."""
    return str(
        sqs.create_queue(
            QueueName=name, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        )["QueueUrl"]
    )


@contextmanager
def start_stack(config: SoakConfig) -> Iterator[SoakStack]:
    """The whole local stack for one soak run; everything started is stopped on the way out and
    ``os.environ`` is restored (the soak also runs inside pytest)."""
    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415
    from dev.stack.awslocal import create_resources  # noqa: PLC0415
    from dev.stack.gateway import Gateway  # noqa: PLC0415

    log_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    log_path = log_dir / "workers.log"
    with ExitStack() as on_exit:
        procs = on_exit.enter_context(children())
        worker_log = on_exit.enter_context(log_path.open("w"))
        on_exit.enter_context(mock.patch.dict(os.environ))
        devnull = on_exit.enter_context(open(os.devnull, "w"))
        # The in-process webhook handler's EMF lines go nowhere; the soak's `say` keeps its own stdout.
        on_exit.enter_context(redirect_stdout(devnull))
        sandbox = SandboxServer(rate_limit_burst=100, rate_limit_interval_ms=10_000).start()
        on_exit.callback(sandbox.stop)
        moto, endpoint = start_moto_process()
        procs.append(moto)
        stack = create_resources(
            endpoint,
            suffix=f"soak{uuid.uuid4().hex[:6]}",
            visibility_timeout=config.visibility_timeout,
            max_receive_count=config.max_receive_count,
        )
        sqs = stack.client("sqs")
        mirror_url = create_fifo_queue(sqs, f"EnrichedOrder-{stack.suffix}.fifo")
        env = stack.env(
            sandbox.url,
            output_mode="both",
            OUTPUT_QUEUE_URL=mirror_url,
            POWERTOOLS_METRICS_DISABLED="true",
            POWERTOOLS_LOG_LEVEL="WARNING",
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_IDEMPOTENCY_DISABLED="false",
            ENRICHER_MAX_WORKERS="4",
            POWERLEADS_READ_TIMEOUT_SECONDS="3",
            SOAK_RECEIVE_LOCK=str(log_dir / "receive.lock"),
            ENRICHER_MAXIMUM_CONCURRENCY=str(config.workers),  # the processes run here
        )
        os.environ.update(env)  # the webhook handler reads its cold-start config from here
        collector = Collector(
            sqs,
            {
                "records": stack.enriched_queue_url,
                "ordered": mirror_url,
                "quarantine": stack.quarantine_queue_url,
                "dlq": stack.ingest_dlq_url,
            },
        ).start()
        on_exit.callback(collector.stop)
        workers = [
            start_worker_process(env, timeout_seconds=config.function_timeout, log=worker_log)
            for _ in range(config.workers)
        ]
        procs.extend(workers)
        proxy = intake_environment(config, endpoint)  # after the workers: the handler only
        if proxy is not None:
            on_exit.callback(proxy.stop)
        gateway = Gateway(load_handler("webhook")).start()
        on_exit.callback(gateway.stop)
        yield SoakStack(sandbox, stack, sqs, mirror_url, env, collector, workers, gateway, proxy, log_path)
