"""The soak's child processes: the moto server (``python -m dev.stack.awslocal --bare``) and the
enricher "containers" (``python -m dev.soak.webhooks worker``: an SqsPoller + EnricherFunction each)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dev.stack.poller import SqsPoller

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "enriched-record-v1.json"


def _webhook_ids(event: dict[str, Any]) -> list[str | None]:
    """The webhookId of each record of an SQS event, for the worker log (None if unreadable)."""
    out: list[str | None] = []
    for record in event.get("Records", []):
        try:
            out.append(json.loads(json.loads(record["body"])["body"]).get("webhookId"))
        except (KeyError, TypeError, ValueError):
            out.append(None)
    return out


def worker_main(argv: list[str]) -> int:
    """One enricher "container": SqsPoller + EnricherFunction until SIGTERM (or SIGKILL)."""
    parser = argparse.ArgumentParser(prog="python -m dev.soak.webhooks worker")
    parser.add_argument("--timeout-seconds", type=float, default=10.0, help="Lambda timeout")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--wait-seconds", type=int, default=1)
    parser.add_argument(
        "--pause-after-invoke", type=float, default=0.0, help="sleep after each invocation, before the delete"
    )
    args = parser.parse_args(argv)

    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415

    handler = load_handler("enricher")
    invocations = 0

    def traced(event: dict[str, Any], context: Any) -> Any:
        nonlocal invocations
        invocations += 1
        ids = [r["messageId"] for r in event.get("Records", [])]
        print(
            json.dumps(
                {
                    "event": "invoke",
                    "pid": os.getpid(),
                    "n": invocations,
                    "t": round(time.time(), 3),
                    "messageIds": ids,
                    "webhooks": _webhook_ids(event),
                }
            ),
            flush=True,
        )
        result = handler(event, context)
        print(
            json.dumps(
                {
                    "event": "done",
                    "pid": os.getpid(),
                    "n": invocations,
                    "t": round(time.time(), 3),
                    "result": result,
                }
            ),
            flush=True,
        )
        if args.pause_after_invoke:  # crash tests: a window between the handler's return and the ack
            time.sleep(args.pause_after_invoke)
        return result

    lock_path = os.environ.get("SOAK_RECEIVE_LOCK")
    poller_class = SerialReceivePoller if lock_path else SqsPoller
    poller = poller_class(
        traced,
        os.environ["INGEST_QUEUE_URL"],
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        batch_size=args.batch_size,
        wait_time_seconds=0 if lock_path else args.wait_seconds,
        timeout_seconds=args.timeout_seconds,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    poller.start()
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    parent = os.getppid()
    while not stopped.wait(1.0):
        if os.getppid() != parent:  # the soak died without stopping us: do not linger
            break
    poller.stop()
    print(
        json.dumps(
            {
                "event": "stopped",
                "invocations": poller.invocations,
                "failedInvocations": poller.failed_invocations,
                "received": poller.messages_received,
                "deleted": poller.messages_deleted,
                "failed": poller.messages_failed,
            }
        ),
        flush=True,
    )
    return 0


class SerialReceivePoller(SqsPoller):
    """An SqsPoller whose ReceiveMessage calls are serialised across processes by a file lock.

    Why: moto's ReceiveMessage is not atomic. Two consumers receiving at once (or one long poll
    working from the in-flight groups it saw when it started) can both be handed messages of
    the same FIFO message group, which real SQS never does. Lambda's event source mapping does
    not do that either. Serialising the receive (short polls, under ``flock``) restores the
    guarantee; the batches themselves are still processed in parallel by several processes.
    """

    def receive(self) -> list[dict[str, Any]]:
        import fcntl  # noqa: PLC0415 - POSIX only, like the rest of the dev stack

        with open(os.environ["SOAK_RECEIVE_LOCK"], "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                messages = super().receive()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        if not messages:
            time.sleep(0.1)  # short polls: do not spin on an empty queue
        return messages


def start_moto_process() -> tuple[subprocess.Popen[str], str]:
    """``python -m dev.stack.awslocal --bare`` as a child; returns it and the endpoint URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dev.stack.awslocal", "--bare"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        stop_process(proc)
        raise RuntimeError(f"moto server did not start (said {line!r})")
    return proc, line


def start_worker_process(
    env: dict[str, str],
    *,
    timeout_seconds: float,
    log: IO[str] | int | None = None,
    pause_after_invoke: float = 0.0,
) -> subprocess.Popen[str]:
    """``python -m dev.soak.webhooks worker`` with ``env`` (the runtime contract) on top of ours."""
    command = [sys.executable, "-m", "dev.soak.webhooks", "worker", "--timeout-seconds", str(timeout_seconds)]
    if pause_after_invoke:
        command += ["--pause-after-invoke", str(pause_after_invoke)]
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT if log is not None else None,
        text=True,
    )


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM this child, then SIGKILL it if it lingers (never anything but this pid)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@contextmanager
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            stop_process(proc)
