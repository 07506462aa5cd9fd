"""Drains the soak's output queues (EnrichedQueue, the FIFO mirror, QuarantineQueue, IngestDLQ)."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from dev.stack.sqs import QueueReader, string_attributes


@dataclass
class Collected:
    """Everything drained from the output queues, kept in arrival order."""

    records: list[dict[str, Any]] = field(default_factory=list)  # EnrichedQueue bodies
    ordered: list[dict[str, Any]] = field(default_factory=list)  # FIFO mirror bodies
    quarantine: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    ingest_dlq: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def outcomes(self) -> int:
        with self.lock:
            return len(self.records) + len(self.quarantine) + len(self.ingest_dlq)


class Collector:
    """Drains EnrichedQueue, the FIFO mirror, QuarantineQueue and IngestDLQ while the run goes."""

    def __init__(self, sqs: Any, queues: dict[str, str]) -> None:
        self.data = Collected()
        self.readers = [
            QueueReader(sqs, url, functools.partial(self._keep, name), name=f"collect-{name}")
            for name, url in queues.items()
        ]

    @property
    def errors(self) -> list[str]:
        return [error for reader in self.readers for error in reader.errors]

    def start(self) -> Collector:
        for reader in self.readers:
            reader.start()
        return self

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()

    def _keep(self, name: str, messages: list[dict[str, Any]]) -> None:
        with self.data.lock:
            for message in messages:
                if name == "records":
                    self.data.records.append(json.loads(message["Body"]))
                elif name == "ordered":
                    self.data.ordered.append(json.loads(message["Body"]))
                elif name == "quarantine":
                    self.data.quarantine.append((json.loads(message["Body"]), string_attributes(message)))
                else:
                    self.data.ingest_dlq.append(message["Body"])
