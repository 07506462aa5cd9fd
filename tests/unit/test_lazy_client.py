"""``aws.sdk.LazyClient``: the enricher makes its SQS client only when it quarantines or hands
back, never at cold start (each client made at init loads its service model)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from appointment_enricher.aws.sdk import LazyClient
from appointment_enricher.config import EnricherSettings


class FakeSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        self.sent.append(kwargs)
        return {"MessageId": "m1"}


def test_the_client_is_made_once_on_first_use_even_by_racing_threads() -> None:
    made: list[FakeSqs] = []
    gate = threading.Barrier(8)

    def make() -> FakeSqs:
        made.append(FakeSqs())
        return made[-1]

    lazy: Any = LazyClient(make)
    assert not lazy.made and made == []

    def call() -> None:
        gate.wait()
        lazy.send_message(QueueUrl="q", MessageBody="b")

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and lazy.made
    assert len(made[0].sent) == 8


def test_the_enricher_makes_no_sqs_client_at_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from appointment_enricher.enrich import wiring  # noqa: PLC0415

    made: list[str] = []
    monkeypatch.setattr(wiring, "sqs_client", lambda *args, **kwargs: made.append("sqs") or FakeSqs())
    monkeypatch.setattr(wiring, "sns_client", lambda *args, **kwargs: object())
    settings = EnricherSettings.from_env(
        {
            "QUARANTINE_QUEUE_URL": "https://sqs/q",
            "INGEST_QUEUE_URL": "https://sqs/ingest.fifo",
            "OUTPUT_TOPIC_ARN": "arn:t",
            "POWERLEADS_TOKEN": "t",
        }
    )
    service, _ = wiring.build_enricher(settings)
    assert made == []  # not at init
    service.quarantine.client.send_message(QueueUrl="https://sqs/q", MessageBody="{}")
    assert made == ["sqs"]  # on the first quarantine
