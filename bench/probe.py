"""One measured process: ``python -m bench.probe <spec.json> <result.json>``.

Every cold-start figure is taken in a fresh interpreter running this module. Before the clock
starts, each kind imports the same harness (stdlib + ``dev.fakes.lambda_loader`` +
``dev.fakes.lambda_context``, both stdlib-only) and reads its inputs, so the floor and the
handlers pay identical overheads and
the clock covers exactly: imports + init + the first request handled.

Kinds (``spec["kind"]``):

* ``floor``: ``import boto3`` + one SQS client (the floor of the goals), then one ``SendMessage``
  (reported apart), then ``records`` more sends timed one by one (the warm floor);
* ``receiver``: load ``functions/webhook/app.py`` + handle the first signed webhook, then
  ``records`` more webhooks timed one by one; peak RSS at the end;
* ``enricher``: load ``functions/enricher/app.py`` (or ``bench.naive``) + handle a batch of one,
  then ``records`` more records in batches of ten; peak RSS at the end;
* ``batch``: a warm enricher (product or naive) timed on batches of ten distinct appointments and
  of ten updates to one appointment (``spec["shapes"]``: both unless told) at the sandbox latency
  given, against one warm round trip; AWS calls per record are counted by operation and payload
  size (for the cost model), upstream requests as appointment and related-entity fetches;
* ``cpu``: warm CPU per record of validate + enrich + serialize, in-process, no I/O; plus the
  init micro-costs of two cold-start fixes (``init_micro``).

``spec["gc_untouched"]``: the handlers' ``gc.disable()`` / ``gc.freeze()`` become no-ops, i.e. the
cold start as it was before the collector was turned off during init (the *before* of that row).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import add_code_paths, load_handler

if TYPE_CHECKING:
    from appointment_enricher.ledger.base import LedgerEntry

Handler = Callable[[dict[str, Any], Any], Any]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_jsonl(path: str | None) -> Iterator[dict[str, Any]]:
    """One item at a time, so held inputs do not inflate the peak RSS being measured."""
    if not path:
        return
    with open(path) as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


PURGE_EVERY = 100  # moto's FIFO sends slow down with queue depth: keep queues short, untimed


def _sqs_client() -> Any:
    """The bench's own SQS client inside a measured process: from the product's session when its
    layer is loaded (a second session would add its few MB to the process's peak RSS, which a
    Lambda container without the bench does not have), else from boto3's default session."""
    import boto3  # noqa: PLC0415 - only after the cold start

    sdk = sys.modules.get("appointment_enricher.aws.sdk")
    return sdk.product_session().client("sqs") if sdk is not None else boto3.client("sqs")


class Purger:
    """Empties the stack's queues every ``PURGE_EVERY`` records, outside the timed sections."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.client = _sqs_client()
        self.seen = 0

    def purge(self) -> None:
        for url in self.urls:
            self.client.purge_queue(QueueUrl=url)

    def tick(self, records: int = 1) -> None:
        before, self.seen = self.seen, self.seen + records
        if before // PURGE_EVERY != self.seen // PURGE_EVERY:
            self.purge()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# ---- AWS call accounting ------------------------------------------------------------------------


class CallCounter:
    """Counts botocore API calls by ``service:Operation`` with billable 64 KiB chunks.

    Installed after the cold start (installing it imports botocore, which must not happen before
    the clock). SQS and SNS bill every 64 KiB of payload as one request.
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.chunks: dict[str, int] = {}
        # Sizes of the items this process put, by table and key: a PutItem that replaces an item
        # is billed on the larger of the old and the new item (DynamoDB Developer Guide, "DynamoDB
        # read and write operations"). Items written by another process count at their new size.
        self.item_sizes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def install(self) -> CallCounter:
        import botocore.client  # noqa: PLC0415 - after the cold start on purpose

        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        counter = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            if service == "dynamodb":
                with counter._lock:
                    units = _ddb_units(operation, params, counter.item_sizes)
                counter.add_units(f"{service}:{operation}", units)
            else:
                counter.add(f"{service}:{operation}", _payload_bytes(params))
            return original(client, operation, params)

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[attr-defined]
        return self

    def add(self, name: str, payload: int) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.chunks[name] = self.chunks.get(name, 0) + max(1, -(-payload // 65536))

    def add_units(self, name: str, units: int) -> None:
        """A call billed in request units rather than 64 KiB chunks (DynamoDB)."""
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.chunks[name] = self.chunks.get(name, 0) + units

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"calls": dict(self.calls), "chunks": dict(self.chunks)}

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.chunks.clear()


def _ddb_value_bytes(value: dict[str, Any]) -> int:
    """DynamoDB's size of one typed value (numbers approximated: 1 byte per 2 digits + 1)."""
    ((kind, inner),) = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        return len(inner) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(v.encode() if isinstance(v, str) else v) for v in inner)
    if kind == "NS":
        return sum(len(v) // 2 + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k) + 1 + _ddb_value_bytes(v) for k, v in inner.items())
    return 3 + sum(1 + _ddb_value_bytes(v) for v in inner)  # L


def _ddb_item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values."""
    return sum(len(name.encode()) + _ddb_value_bytes(value) for name, value in item.items())


def _ddb_units(
    operation: str, params: dict[str, Any], item_sizes: dict[tuple[str, str], int] | None = None
) -> int:
    """Billed request units of one call, from the request: writes 1 per started KB of the larger
    of the item replaced (when ``item_sizes`` saw it put) and the new item (updates: their items
    here are small: 1), reads 1 per item up to 4 KB strongly consistent, half that eventually
    consistent (rounded up)."""
    sizes = item_sizes if item_sizes is not None else {}

    def put(table: str, item: dict[str, Any]) -> int:
        new = _ddb_item_bytes(item)
        key = (table, json.dumps(item.get("id", {}), sort_keys=True))
        old = sizes.get(key, 0)
        sizes[key] = new
        return max(1, -(-max(new, old) // 1024))

    if operation == "PutItem":
        return put(str(params.get("TableName", "")), params.get("Item", {}))
    if operation == "BatchWriteItem":  # billed per item written, as that many PutItems
        units = 0
        for table, writes in (params.get("RequestItems") or {}).items():
            for write in writes:
                units += put(table, (write.get("PutRequest") or {}).get("Item", {}))
        return max(1, units)
    if operation == "BatchGetItem":
        total = 0
        for request in (params.get("RequestItems") or {}).values():
            keys = len(request.get("Keys", []))
            total += keys if request.get("ConsistentRead") else -(-keys // 2)
        return max(1, total)
    return 1


def _payload_bytes(params: dict[str, Any]) -> int:
    def one(entry: dict[str, Any]) -> int:
        body = entry.get("MessageBody") or entry.get("Message") or ""
        attrs = entry.get("MessageAttributes") or {}
        size = len(str(body).encode())
        for name, value in attrs.items():
            size += len(name) + len(str(value.get("StringValue", ""))) + len(str(value.get("DataType", "")))
        return size

    entries = params.get("Entries") or params.get("PublishBatchRequestEntries")
    if isinstance(entries, list):
        return sum(one(e) for e in entries)
    return one(params)


# ---- kinds --------------------------------------------------------------------------------------


def _load(impl: str) -> Handler:
    if impl == "naive":
        add_code_paths()
        import bench.naive  # noqa: PLC0415 - module-level init is the naive cold start

        return bench.naive.lambda_handler
    return load_handler(impl)


def run_floor(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    import boto3  # noqa: PLC0415 - inside the clock: that is the floor

    client = boto3.client("sqs")
    cold = time.perf_counter() - t0
    url = spec["queue_url"]

    def send(i: int) -> None:
        client.send_message(
            QueueUrl=url,
            MessageBody=spec["body"],
            MessageGroupId=f"floor-{i % 10}",
            MessageDeduplicationId=f"{spec['nonce']}-{i}",
        )

    t1 = time.perf_counter()
    send(-1)
    first_send = time.perf_counter() - t1
    warm = []
    purger = Purger(spec.get("purge", []))
    for i in range(int(spec.get("records", 0))):
        t = time.perf_counter()
        send(i)
        warm.append(ms(time.perf_counter() - t))
        purger.tick()
    return {
        "cold_ms": ms(cold),
        "first_send_ms": ms(first_send),
        "cold_plus_send_ms": ms(cold + first_send),
        "warm_ms": warm,
        "rss_mb": peak_rss_mb(),
    }


def run_receiver(spec: dict[str, Any]) -> dict[str, Any]:
    first = spec["first"]
    context = make_context("WebhookFunction", memory_limit_in_mb=128)
    add_code_paths()
    t0 = time.perf_counter()
    for module in spec.get("preimport", []):  # the "eager imports" variant
        __import__(module)
    handler = load_handler("webhook")
    t_init = time.perf_counter()
    reply = handler(first, context)
    cold = time.perf_counter() - t0
    if reply.get("statusCode") != 202:
        raise SystemExit(f"receiver answered {reply} to the first webhook")
    rss_first = peak_rss_mb()
    counter = CallCounter().install()
    purger = Purger(spec.get("purge", []))
    warm = []
    for event in read_jsonl(spec.get("rest")):
        context = make_context("WebhookFunction", memory_limit_in_mb=128)
        t = time.perf_counter()
        reply = handler(event, context)
        warm.append(ms(time.perf_counter() - t))
        purger.tick()
        if reply.get("statusCode") != 202:
            raise SystemExit(f"receiver answered {reply}")
    return {
        "cold_ms": ms(cold),
        "init_ms": ms(t_init - t0),
        "warm_ms": warm,
        "rss_first_mb": rss_first,
        "rss_mb": peak_rss_mb(),
        "aws": counter.snapshot(),
        "records": len(warm) + 1,
    }


def run_enricher(spec: dict[str, Any]) -> dict[str, Any]:
    first = spec["first"]
    context = make_context("EnricherFunction", timeout_seconds=60, memory_limit_in_mb=256)
    add_code_paths()
    t0 = time.perf_counter()
    handler = _load(spec.get("impl", "enricher"))
    t_init = time.perf_counter()
    result = handler(first, context)
    cold = time.perf_counter() - t0
    if result.get("batchItemFailures"):
        raise SystemExit(f"enricher failed the first batch: {result}")
    rss_first = peak_rss_mb()
    records = 1
    durations = []
    purger = Purger(spec.get("purge", []))
    for batch in read_jsonl(spec.get("rest")):
        purger.tick(len(batch["Records"]))
        context = make_context("EnricherFunction", timeout_seconds=60, memory_limit_in_mb=256)
        t = time.perf_counter()
        result = handler(batch, context)
        durations.append(ms(time.perf_counter() - t))
        if result.get("batchItemFailures"):
            raise SystemExit(f"enricher failed records: {result}")
        records += len(batch["Records"])
    return {
        "cold_ms": ms(cold),
        "init_ms": ms(t_init - t0),
        "rss_first_mb": rss_first,
        "rss_mb": peak_rss_mb(),
        "records": records,
        "batch_ms": durations,
    }


def _sandbox(base_url: str, method: str, path: str, payload: Any = None) -> Any:
    import urllib.request  # noqa: PLC0415

    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{base_url}{path}", data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def count_upstream(paths: list[str]) -> tuple[int, int]:
    """(Get Appointment requests, related-entity requests: Get Contact/Calendar/User/Location)."""
    from dev.fakes.sandbox_related import route  # noqa: PLC0415 - stdlib only, after the cold start

    appointments = sum(1 for path in paths if path.startswith("/calendars/events/appointments/"))
    return appointments, sum(1 for path in paths if route(path.split("?", 1)[0]) is not None)


def _upstream_calls(base_url: str) -> tuple[int, int]:
    log = _sandbox(base_url, "GET", "/_sandbox/requests")
    return count_upstream([str(entry.get("path", "")) for entry in log])


QUIET_GAP_S = 10.5  # more than the fleet budget's window: a quiet location's share is free again


def run_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """Warm batches at a sandbox latency; every timed batch starts from a cleared request log."""
    import requests  # noqa: PLC0415 - the floor's client: one warm keep-alive connection

    sandbox = spec["sandbox_url"]
    latency = int(spec["latency_ms"])
    handler = _load(spec.get("impl", "enricher"))
    from appointment_enricher.wire import DEFAULT_API_VERSION  # noqa: PLC0415 - on the path once loaded

    if spec.get("fetch_after_read"):  # the earlier order: every group's fetch waits for the read
        from appointment_enricher.enrich import prepare  # noqa: PLC0415

        prepare.fetch_early = lambda group: None

    batches = read_jsonl(spec["batches"])
    for _ in range(int(spec.get("warmup", 2))):  # cold start, token, connections: out of the way
        handler(next(batches)["distinct"], make_context("EnricherFunction", timeout_seconds=60))
    # Untimed, after the warm-up: the budget window it spent passes (the related-entity builds'
    # warm-up fills their cache with five requests per location per batch, past the container's
    # own share; the timed batches measure a filled cache, not its filling).
    time.sleep(float(spec.get("settle_s", 0)))
    quiet_warmup = spec.get("quiet_warmup")
    if quiet_warmup:
        # Every quiet set once, untimed: the container learns its locations (the ledger's
        # once-per-container location registry), then waits out the budget window, so each timed
        # quiet batch is ten locations known to it and quiet for the last window.
        for event in read_jsonl(quiet_warmup):
            handler(event, make_context("EnricherFunction", timeout_seconds=60))
        time.sleep(QUIET_GAP_S)  # from the last warm-up batch: holds however slow the machine is
    counter = CallCounter().install()
    session = requests.Session()
    probe_url = f"{sandbox}/calendars/events/appointments/{spec['floor_id']}"
    probe_headers = {"Authorization": f"Bearer {spec['token']}", "Version": DEFAULT_API_VERSION}
    session.get(probe_url, headers=probe_headers, timeout=10).raise_for_status()

    shapes = spec.get("shapes", ["distinct", "same", "local", "quiet"])
    pause = float(spec.get("pause_s", 0))  # untimed, before each pair: spaces the batches out
    out: dict[str, list[Any]] = {"floor_ms": []}
    for name in ("distinct", "same", "local", "quiet"):
        for what in ("ms", "upstream", "related", "aws"):
            out[f"{name}_{what}"] = []
    # Untimed, before each pair: the records of earlier batches off the stack's queues (a real
    # queue does not slow down with its depth; moto's SQS scans the whole queue per message sent).
    purger = Purger(spec.get("purge", []))
    for pair in batches:
        time.sleep(pause)
        purger.purge()
        for name in (shape for shape in shapes if shape in pair):
            event = pair[name]
            _sandbox(sandbox, "POST", "/_sandbox/reset")
            _sandbox(sandbox, "POST", "/_sandbox/latency", {"ms": latency})
            counter.reset()
            context = make_context("EnricherFunction", timeout_seconds=60, memory_limit_in_mb=256)
            t = time.perf_counter()
            result = handler(event, context)
            out[f"{name}_ms"].append(ms(time.perf_counter() - t))
            if result.get("batchItemFailures"):
                raise SystemExit(f"{spec.get('impl')} failed records: {result}")
            appointments, related = _upstream_calls(sandbox)
            out[f"{name}_upstream"].append(appointments)
            out[f"{name}_related"].append(related)
            out[f"{name}_aws"].append(counter.snapshot())
        t = time.perf_counter()
        session.get(probe_url, headers=probe_headers, timeout=10).raise_for_status()
        out["floor_ms"].append(ms(time.perf_counter() - t))
    _sandbox(sandbox, "POST", "/_sandbox/reset")
    if spec.get("impl", "enricher") == "enricher" and int(spec.get("micro", 0)):
        out.update(_micro(spec, session, probe_url, probe_headers, pair["distinct"]))
    return {**out, "records_per_batch": 10}


def _micro(
    spec: dict[str, Any], session: Any, url: str, headers: dict[str, str], batch: dict[str, Any]
) -> dict[str, list[Any]]:
    """Session reuse vs a new connection per GET at the bench latency (at 0 ms the sandbox's
    keep-alive replies hit a Nagle/delayed-ACK stall of ~40 ms that would flatter new connections);
    10 publishes vs one batch publish."""
    import boto3  # noqa: PLC0415
    import requests  # noqa: PLC0415

    samples = int(spec["micro"])
    _sandbox(spec["sandbox_url"], "POST", "/_sandbox/latency", {"ms": int(spec["latency_ms"])})
    out: dict[str, list[Any]] = {k: [] for k in ("session_ms", "new_conn_ms")}
    out.update({"publish_batch_ms": [], "publish_single_ms": []})
    for _ in range(samples):
        t = time.perf_counter()
        session.get(url, headers=headers, timeout=10).raise_for_status()
        out["session_ms"].append(ms(time.perf_counter() - t))
        t = time.perf_counter()
        requests.get(url, headers=headers, timeout=10).raise_for_status()
        out["new_conn_ms"].append(ms(time.perf_counter() - t))
    _sandbox(spec["sandbox_url"], "POST", "/_sandbox/reset")
    sns = boto3.client("sns")
    topic = spec["topic_arn"]
    bodies = [record["body"] for record in batch["Records"]]
    for _ in range(max(1, samples // 4)):
        t = time.perf_counter()
        for body in bodies:
            sns.publish(TopicArn=topic, Message=body)
        out["publish_single_ms"].append(ms(time.perf_counter() - t))
        t = time.perf_counter()
        sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[{"Id": f"m{i}", "Message": b} for i, b in enumerate(bodies)],
        )
        out["publish_batch_ms"].append(ms(time.perf_counter() - t))
    out.update(_client_cpu(spec, url, headers, topic, bodies, samples))
    return out


def _client_cpu(
    spec: dict[str, Any], url: str, headers: dict[str, str], topic: str, bodies: list[str], samples: int
) -> dict[str, list[Any]]:
    """Thread CPU per call, the SDKs as they come vs as the product sets them up, alternating:
    a warm GET on a session that reads the environment per request (requests' ``trust_env``) vs
    ``read_environment_once``; a PublishBatch of ten whose body botocore encodes twice vs once
    (``encode_form_once``). The sandbox answers at 0 ms here: CPU, not latency, is measured."""
    import boto3  # noqa: PLC0415

    from appointment_enricher.aws.sdk import PUBLISH_CONFIG, sns_client  # noqa: PLC0415
    from appointment_enricher.powerleads.client import pooled_session  # noqa: PLC0415

    per_env, once = pooled_session(), pooled_session()
    per_env.trust_env = True  # what a plain requests.Session does
    plain_sns, product_sns = boto3.client("sns", config=PUBLISH_CONFIG), sns_client(PUBLISH_CONFIG)
    entries: list[Any] = [{"Id": f"m{i}", "Message": b} for i, b in enumerate(bodies)]
    out: dict[str, list[Any]] = {k: [] for k in ("get_cpu_env_us", "get_cpu_once_us")}
    out.update({"publish_cpu_twice_us": [], "publish_cpu_once_us": []})
    calls = 20
    for _ in range(samples):
        for name, session in (("get_cpu_env_us", per_env), ("get_cpu_once_us", once)):
            session.get(url, headers=headers, timeout=10).raise_for_status()  # warm
            t = time.thread_time()
            for _ in range(calls):
                session.get(url, headers=headers, timeout=10).raise_for_status()
            out[name].append((time.thread_time() - t) / calls * 1e6)
        clients: tuple[tuple[str, Any], ...] = (
            ("publish_cpu_twice_us", plain_sns),
            ("publish_cpu_once_us", product_sns),
        )
        for name, sns in clients:
            sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)  # warm
            t = time.thread_time()
            for _ in range(max(1, calls // 4)):
                sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
            out[name].append((time.thread_time() - t) / max(1, calls // 4) * 1e6)
    _sandbox(spec["sandbox_url"], "POST", "/_sandbox/reset")
    return out


# aws/queues.py's character class before and after (the same set of characters, see its test)
NEGATED_XML_CLASS = "[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


class ItemCapture:
    """A DynamoDB client that keeps the last item put: the ledger adapter's item, no network."""

    class exceptions:
        class ConditionalCheckFailedException(Exception):
            pass

    def __init__(self) -> None:
        self.item: dict[str, Any] = {}

    def put_item(self, **kwargs: Any) -> None:
        self.item = kwargs["Item"]


def pending_ledger_entry(settled_marks: int = 0) -> LedgerEntry:
    """A ledger write ahead of a publish: the sample appointment announced, a rescheduled copy
    pending, one delivery in ``recent``, ``settled_marks`` deliveries to mark settled."""
    import copy  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415

    from appointment_enricher.ledger.base import LedgerEntry, LedgerState  # noqa: PLC0415
    from bench.services import sample_event  # noqa: PLC0415

    announced = sample_event()
    pending = copy.deepcopy(announced)
    pending.update(startTime="2025-06-09T09:30:00-04:00", endTime="2025-06-09T10:00:00-04:00")
    pending.update(dateUpdated="2025-06-03T08:00:00.000Z")
    change = {"kind": "rescheduled", "kinds": ["rescheduled"], "changedFields": ["endTime", "startTime"]}
    dedupe = "wh-5f0c6a0e-8a41-4c1e-9d2f-2b7f0d3f6c11"
    moment = datetime(2025, 6, 3, 8, 0, tzinfo=UTC)
    return LedgerEntry(
        announced["id"],
        announced["locationId"],
        datetime(2025, 6, 1, 20, 47, 33, tzinfo=UTC),
        False,
        announced,
        recent=((dedupe, change),),
        revision=3,
        pending=LedgerState(moment, False, pending),
        sequence=4,
        sequences={dedupe: 4},
        settle=tuple(f"wh-{i}" for i in range(settled_marks)),
    )


def ledger_item(entry: LedgerEntry) -> dict[str, Any]:
    """The item the ledger's DynamoDB adapter writes for ``entry``."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from appointment_enricher.ledger.dynamodb import DynamoLedger  # noqa: PLC0415

    client = ItemCapture()
    DynamoLedger(client, "ledger", now=lambda: datetime(2025, 6, 3, 8, 0, tzinfo=UTC)).save(entry)  # type: ignore[arg-type]
    return dict(client.item)


def ledger_item_units() -> dict[str, float]:
    """Billed write units of the ledger's write ahead of a publish (``pending_ledger_entry`` with
    ten settled marks): with plain zlib (the item layout before ``ledger/compression.py``) and
    with its preset dictionaries."""
    import zlib  # noqa: PLC0415

    from appointment_enricher.ledger.base import SETTLED_LIMIT  # noqa: PLC0415

    entry = pending_ledger_entry(SETTLED_LIMIT)
    assert entry.pending is not None
    item = ledger_item(entry)
    after = _ddb_units("PutItem", {"Item": item})

    def plain(value: Any) -> bytes:
        return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 9)

    item["appointment"] = {"B": plain(dict(entry.appointment))}
    old_pending = {
        "dateUpdated": "2025-06-03T08:00:00.000Z",
        "deleted": False,
        "deletedBy": None,
        "appointment": dict(entry.pending.appointment),
    }
    item["pending"] = {"B": plain(old_pending)}
    return {
        "ledger_item_units_plain": float(_ddb_units("PutItem", {"Item": item})),
        "ledger_item_units_dictionary": float(after),
    }


def init_micro(repeats: int = 5) -> dict[str, float]:
    """Medians in ms: compiling the negated vs the positive character class of ``aws/queues.py``
    (``re.purge`` first: a cold start compiles it once), creating a ``ReconcilerSettings`` class
    and the four related-entity models with their validators built at once vs deferred
    (``defer_build``), the enricher's SQS client made at init vs a ``LazyClient``, ``import requests``
    with and without its detector, the three clients made from full vs cut service models, the
    enricher's own modules with and without the related entities', and a list default by factory
    vs by value."""
    import re  # noqa: PLC0415
    import statistics  # noqa: PLC0415

    from pydantic import ConfigDict  # noqa: PLC0415

    from appointment_enricher.aws import queues  # noqa: PLC0415
    from appointment_enricher.aws.sdk import LazyClient  # noqa: PLC0415
    from appointment_enricher.config import pipeline  # noqa: PLC0415

    def timed(action: Callable[[], object]) -> float:
        samples = []
        for _ in range(repeats):
            re.purge()
            t = time.perf_counter()
            action()
            samples.append(ms(time.perf_counter() - t))
        return float(statistics.median(samples))

    def entity_classes(defer: bool) -> object:
        from appointment_enricher import entities  # noqa: PLC0415

        made = []
        for model in (entities.Contact, entities.Calendar, entities.User, entities.Location):
            config = ConfigDict(**model.model_config)
            config["defer_build"] = defer
            namespace = {"model_config": config, "__module__": entities.__name__}
            made.append(type(f"{model.__name__}Probe", (model,), namespace))
        return made

    def sqs_client_ms() -> float:
        """The SQS client a cold start would make after its other clients (a fresh botocore
        session each time, so its service model is read as at a cold start)."""
        import boto3  # noqa: PLC0415

        from appointment_enricher.aws.sdk import BACKEND_CONFIG  # noqa: PLC0415

        samples = []
        for _ in range(repeats):
            session = boto3.session.Session()
            session.client("dynamodb", config=BACKEND_CONFIG)  # the cold start's first client
            t = time.perf_counter()
            session.client("sqs", config=BACKEND_CONFIG)
            samples.append(ms(time.perf_counter() - t))
        return float(statistics.median(samples))

    def settings_class(defer: bool) -> object:
        config = ConfigDict(**pipeline.ReconcilerSettings.model_config)
        config["defer_build"] = defer
        namespace = {"model_config": config, "__module__": pipeline.__name__}
        return type("ReconcilerSettingsProbe", (pipeline.ReconcilerSettings,), namespace)

    return {
        **ledger_item_units(),
        **requests_import_ms(repeats),
        **clients_made_ms(repeats),
        **enricher_imports_ms(repeats),
        **list_default_ms(repeats),
        "regex_negated_ms": timed(lambda: re.compile(NEGATED_XML_CLASS)),
        "regex_positive_ms": timed(lambda: re.compile(queues._NOT_XML.pattern)),
        "reconciler_settings_eager_ms": timed(lambda: settings_class(False)),
        "reconciler_settings_deferred_ms": timed(lambda: settings_class(True)),
        "related_models_eager_ms": timed(lambda: entity_classes(False)),
        "related_models_deferred_ms": timed(lambda: entity_classes(True)),
        "sqs_client_at_init_ms": sqs_client_ms(),
        "sqs_client_lazy_ms": timed(lambda: LazyClient(lambda: None)),
    }


# A fresh interpreter with boto3 loaded (urllib3 with it, as in both functions), then the clock
# around ``import requests``; ``skip`` first keeps its character-set detector out.
REQUESTS_IMPORT = """
import sys, time
sys.path.insert(0, sys.argv[1])
import boto3
if sys.argv[2] == "skip":
    from appointment_enricher.powerleads.detection import skip_charset_detection
    skip_charset_detection()
t = time.perf_counter()
import requests
print((time.perf_counter() - t) * 1000)
"""


# A fresh interpreter, its collector off as during the functions' init, boto3 loaded; then the
# clock around a new session making the enricher's three clients, from botocore's full service
# models (``full``) or from the product's session and its cut models (``cut``).
CLIENTS_MADE = """
import gc, sys, time
gc.disable()
sys.path.insert(0, sys.argv[1])
import boto3
from appointment_enricher.aws import sdk
t = time.perf_counter()
session = sdk.product_session() if sys.argv[2] == "cut" else boto3.session.Session()
for name in ("dynamodb", "sns", "secretsmanager"):
    session.client(name, region_name="us-east-1", config=sdk.BACKEND_CONFIG)
print((time.perf_counter() - t) * 1000)
"""


# A fresh interpreter as the enricher's init has it when its own modules load (collector off;
# boto3, requests and pydantic loaded, pydantic's first model made), then the clock around
# importing the default build's modules; ``related`` adds the related entities' fetcher and
# models, which every build imported before ``entities.py`` (now ``ENRICH_RELATED`` builds only).
ENRICHER_IMPORTS = """
import gc, sys, time
gc.disable()
sys.path.insert(0, sys.argv[1])
import boto3, requests, pydantic
class First(pydantic.BaseModel):
    a: int = 0
t = time.perf_counter()
import appointment_enricher.enrich.wiring, appointment_enricher.config.pipeline
if sys.argv[2] == "related":
    import appointment_enricher.enrich.related, appointment_enricher.entities
print((time.perf_counter() - t) * 1000)
"""

# A fresh interpreter with pydantic's first model made, then the clock around a settings-like
# model with a list field defaulting through ``default_factory=list`` (pydantic reads the
# factory's signature: ``list``'s is parsed from its text, compiling the tokenizer's patterns) or
# through ``default=[]`` (``config/pipeline.py``).
LIST_DEFAULT = """
import gc, sys, time
gc.disable()
import pydantic
class First(pydantic.BaseModel):
    a: int = 0
t = time.perf_counter()
if sys.argv[2] == "factory":
    class Settings(pydantic.BaseModel):
        names: list[str] = pydantic.Field(default_factory=list)
else:
    class Settings(pydantic.BaseModel):
        names: list[str] = pydantic.Field(default=[])
print((time.perf_counter() - t) * 1000)
"""


def enricher_imports_ms(repeats: int) -> dict[str, float]:
    """Median ms of the enricher's own modules importing in fresh interpreters, with and without
    the related entities' fetcher and models, alternating."""
    return _fresh_medians(ENRICHER_IMPORTS, ("related", "default"), repeats, "enricher_imports")


def list_default_ms(repeats: int) -> dict[str, float]:
    """Median ms of making a model with a list default by factory vs by value, fresh interpreters."""
    return _fresh_medians(LIST_DEFAULT, ("factory", "value"), repeats, "list_default")


def clients_made_ms(repeats: int) -> dict[str, float]:
    """Median ms of a new session making the enricher's DynamoDB, SNS and Secrets Manager
    clients in fresh interpreters, botocore's full models vs the cut ones, alternating."""
    return _fresh_medians(CLIENTS_MADE, ("full", "cut"), repeats, "clients")


def _fresh_medians(script: str, modes: tuple[str, str], repeats: int, name: str) -> dict[str, float]:
    import statistics  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    layer = str(Path(__file__).resolve().parents[1] / "layers" / "shared")
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode, taken in samples.items():
            out = subprocess.run(
                [sys.executable, "-c", script, layer, mode],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
            taken.append(float(out.strip()))
    return {f"{name}_{mode}_ms": float(statistics.median(taken)) for mode, taken in samples.items()}


def requests_import_ms(repeats: int) -> dict[str, float]:
    """Median ms of ``import requests`` in fresh interpreters, with and without its character-set
    detector (``powerleads.detection``), alternating."""
    medians = _fresh_medians(REQUESTS_IMPORT, ("keep", "skip"), repeats, "requests")
    return {
        "requests_with_detector_ms": medians["requests_keep_ms"],
        "requests_without_detector_ms": medians["requests_skip_ms"],
    }


def run_cpu(spec: dict[str, Any]) -> dict[str, Any]:
    """validate (ingest message, webhook, Get Appointment JSON) + enrich + serialize, per record."""
    add_code_paths()
    from datetime import UTC, datetime  # noqa: PLC0415

    from appointment_enricher.enrichment import build_record  # noqa: PLC0415
    from appointment_enricher.models import AppointmentWebhook, GetAppointmentResponse  # noqa: PLC0415
    from appointment_enricher.outbound import outbound_message  # noqa: PLC0415
    from appointment_enricher.wire import IngestMessage, parse_json_object, read_webhook  # noqa: PLC0415

    raw = spec["record"]["body"]
    upstream = spec["upstream_body"]
    iterations = int(spec.get("iterations", 2000))

    def once() -> int:
        ingest = IngestMessage.decode(raw)
        document = parse_json_object(ingest.body)
        ref = read_webhook(document)
        webhook = AppointmentWebhook.model_validate(document)
        appointment = GetAppointmentResponse.model_validate(json.loads(upstream)).event
        record = build_record(
            webhook,
            appointment,
            received_at=ingest.received_at,
            now=datetime.now(UTC),
            webhook_id=ref.webhook_id,
        )
        return outbound_message(record, "m", ingest.dedupe_id).payload_bytes

    for _ in range(200):
        once()
    samples = []
    for _ in range(int(spec.get("repeats", 5))):
        c = time.process_time()
        w = time.perf_counter()
        for _ in range(iterations):
            once()
        samples.append(
            {
                "cpu_us": round((time.process_time() - c) / iterations * 1e6, 2),
                "wall_us": round((time.perf_counter() - w) / iterations * 1e6, 2),
            }
        )
    return {"samples": samples, "iterations": iterations, "init_micro": init_micro()}


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "floor": run_floor,
    "receiver": run_receiver,
    "enricher": run_enricher,
    "batch": run_batch,
    "cpu": run_cpu,
}


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    if spec.get("gc_untouched"):
        import gc  # noqa: PLC0415

        gc.disable = gc.freeze = lambda: None
    result = KINDS[spec["kind"]](spec)
    result["pid"] = os.getpid()
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
