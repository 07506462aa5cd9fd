"""The benchmark harness: the backing services, the probes in fresh processes, and ``bench()``,
which runs every measurement and returns the figures (``bench.report`` writes them up)."""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import events
from dev.fakes.lambda_loader import add_code_paths

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
PEER_VENV = OUT_DIR / "peer-venv"
PEER_REQUIREMENTS = REPO_ROOT / "bench" / "requirements.txt"
# The template's runtime (``Runtime: python3.13``): the cold starts again on it, side by side.
RUNTIME_VENV = OUT_DIR / "runtime-venv"
RUNTIME_VERSION = (3, 13)
LAYER_REQUIREMENTS = REPO_ROOT / "layers" / "shared" / "requirements.txt"
PROBE_TIMEOUT = 600
LATENCY_MS = 100
SANDBOX_TOKEN = "sandbox-token"

# What an eager receiver would import at cold start: the enricher's path (pydantic models,
# requests, the idempotency and secrets utilities). The product's receiver imports none of them.
EAGER_RECEIVER_IMPORTS = [
    "pydantic",
    "requests",
    "appointment_enricher.models",
    "appointment_enricher.enrich.service",
    "appointment_enricher.powerleads.client",
    "appointment_enricher.config",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.utilities.idempotency",
]


def compile_layers(repo_root: Path = REPO_ROOT, python: str | None = None) -> None:
    """Byte-compile the layers' packages before any probe, as the deployed layer ships them.

    ``sam build`` compiles the layer (layers/shared/Makefile) and Lambda cannot write bytecode to
    /opt, so a deployed cold start never compiles the package; the probes run with
    ``PYTHONDONTWRITEBYTECODE`` and would otherwise compile every module that lacks a ``.pyc``
    (10-15 ms of the enricher's cold start, varying with what earlier runs left behind). Timestamp
    mode, not the layer's unchecked hashes: these files sit beside sources that may change.
    Function code (``functions/*/app.py``) stays uncompiled, as on Lambda (/var/task is read-only).
    ``python``: another interpreter's bytecode (the template's runtime), compiled by it.
    """
    for layer in sorted((repo_root / "layers").iterdir()):
        for package in sorted(layer.iterdir()) if layer.is_dir() else []:
            if not (package / "__init__.py").is_file():
                continue
            if python is not None:
                done = (
                    subprocess.run([python, "-m", "compileall", "-q", str(package)], check=False).returncode
                    == 0
                )
            else:
                done = bool(compileall.compile_dir(package, quiet=1, workers=0))
            if not done:
                raise RuntimeError(f"could not byte-compile {package}")


# ---- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """Per-run values of one figure, with its floor/peer per run (same run) when it has one."""

    values: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)

    def add(self, value: float, reference: float | None = None) -> None:
        self.values.append(value)
        if reference is not None:
            self.reference.append(reference)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def ratios(self) -> list[float]:
        return [v / r for v, r in zip(self.values, self.reference, strict=False) if r]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")


# ---- processes ----------------------------------------------------------------------------------


class Services:
    """``python -m bench.services`` as a child process; ``info`` is what it printed."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.services"],
            cwd=REPO_ROOT,
            # the probes purge queues every 100 records (untimed); moto allows one purge a minute
            env={**os.environ, "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("bench.services exited before printing its endpoints")
        self.info: dict[str, Any] = json.loads(line)

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = self.info["env"]
        return env

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def _api_version() -> str:
    """The product's ``Version`` header, for the standalone peer probe (stdlib + the SDK only)."""
    add_code_paths()
    from appointment_enricher.wire import DEFAULT_API_VERSION  # noqa: PLC0415 - after the paths

    return DEFAULT_API_VERSION


def child_env(services: Services, **extra: str) -> dict[str, str]:
    """The contract env as deployed (INFO logs and EMF metrics on; both go to /dev/null)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(services.env)
    env.update({"POWERTOOLS_LOG_LEVEL": "INFO", "PYTHONDONTWRITEBYTECODE": "1", **extra})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_probe(
    spec: dict[str, Any],
    env: dict[str, str],
    workdir: Path,
    *,
    peer_python: str | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """One fresh process; returns the JSON it wrote. ``peer_python``: the peer SDK's probe in its
    venv; ``python``: the product's probe on another interpreter (the template's runtime)."""
    handle, spec_path = tempfile.mkstemp(suffix=".json", dir=workdir)
    os.close(handle)
    Path(spec_path).write_text(json.dumps(spec))
    result_path = Path(spec_path).with_suffix(".result.json")
    if peer_python is not None:
        argv = [peer_python, str(REPO_ROOT / "bench" / "peer_probe.py"), spec_path, str(result_path)]
    else:
        argv = [python or sys.executable, "-m", "bench.probe", spec_path, str(result_path)]
    proc = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"probe {spec['kind']} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def ensure_peer_venv(log: Callable[[str], None]) -> tuple[Path | None, str]:
    """The peer SDK's venv, created once per requirements file; (python, versions or why not)."""
    names = ("gohighlevel-api-client", "httpx", "httpcore", "pydantic", "anyio")
    return _ensure_venv(PEER_VENV, PEER_REQUIREMENTS, sys.executable, names, "the peer SDK", log)


def find_runtime_python(environ: dict[str, str] | None = None) -> str | None:
    """A Python of the template's runtime, found as ``make sam-build`` finds one: ``PYTHON313``,
    else ``python3.13`` on the PATH, else pyenv's newest 3.13; None when none runs."""
    env = os.environ if environ is None else environ
    candidates = [env.get("PYTHON313", ""), "python3.13"]
    root = (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if _has("pyenv")
        else None
    )
    if root is not None and root.returncode == 0:
        versions = sorted(Path(root.stdout.strip(), "versions").glob("3.13*/bin/python3.13"))
        candidates += [str(path) for path in versions[-1:]]
    wanted = f"import sys; sys.exit(0 if sys.version_info[:2] == {RUNTIME_VERSION!r} else 1)"
    for candidate in filter(None, candidates):
        try:
            if (
                subprocess.run(
                    [candidate, "-c", wanted], capture_output=True, check=False, timeout=30
                ).returncode
                == 0
            ):
                return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def _has(command: str) -> bool:
    import shutil  # noqa: PLC0415

    return shutil.which(command) is not None


def ensure_runtime_venv(log: Callable[[str], None]) -> tuple[Path | None, str]:
    """The layer's requirements on the template's runtime Python; (python, versions or why not)."""
    base = find_runtime_python()
    if base is None:
        return None, "not measured: no Python 3.13 (PYTHON313, python3.13 on the PATH, or pyenv)"
    names = ("boto3", "botocore", "pydantic", "requests", "aws-lambda-powertools")
    return _ensure_venv(RUNTIME_VENV, LAYER_REQUIREMENTS, base, names, "the layer's requirements", log)


def _ensure_venv(
    venv: Path,
    requirements: Path,
    base_python: str,
    names: Sequence[str],
    what: str,
    log: Callable[[str], None],
) -> tuple[Path | None, str]:
    """A venv of ``requirements`` made with ``base_python``, (re)built when they change."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = hashlib.sha256(requirements.read_bytes() + base_python.encode()).hexdigest()
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        log(f"installing {what} into {venv.relative_to(REPO_ROOT)} ...")
        try:
            subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    str(requirements),
                ],
                check=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"{venv.name} could not be built: {exc}"
        marker.write_text(wanted)
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    found = [line for line in listing.splitlines() if line.split("==")[0].lower().replace("_", "-") in names]
    return python, ", ".join([f"Python {version}", *found] if venv == RUNTIME_VENV else found)


# ---- the bench ----------------------------------------------------------------------------------


@dataclass
class Results:
    figures: dict[str, Figure] = field(default_factory=dict)
    raw: dict[str, list[Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fig(self, name: str) -> Figure:
        return self.figures.setdefault(name, Figure())

    def keep(self, name: str, value: Any) -> None:
        self.raw.setdefault(name, []).append(value)


def _batches_of(records: Iterator[dict[str, Any]], size: int = 10) -> Iterator[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield events.sqs_event(batch)
            batch = []
    if batch:
        yield events.sqs_event(batch)


def per_unit(snapshots: list[dict[str, dict[str, int]]], key: str, per: float) -> dict[str, float]:
    """Median over batches of each operation's calls/chunks, divided by ``per``."""
    names = {name for snap in snapshots for name in snap[key]}
    return {n: statistics.median([s[key].get(n, 0) for s in snapshots]) / per for n in sorted(names)}


def bench(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Results, dict[str, Any]]:
    results = Results()
    peer_python: Path | None = None
    peer_versions = "not measured (--no-peer)"
    if not args.no_peer:
        peer_python, peer_versions = ensure_peer_venv(log)
        if peer_python is None:
            results.notes.append(peer_versions)
    runtime_python: Path | None = None
    runtime_versions = "not measured (--no-runtime)"
    if not args.no_runtime:
        runtime_python, runtime_versions = ensure_runtime_venv(log)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    compile_layers()
    if runtime_python is not None:
        compile_layers(python=str(runtime_python))
    services = Services()
    try:
        with tempfile.TemporaryDirectory(dir=OUT_DIR) as tmp:
            work = Path(tmp)
            ids: list[str] = services.info["appointment_ids"]
            location: str = services.info["location_id"]
            env = child_env(services)
            queue_url = services.info["ingest_queue_url"]
            purge: list[str] = services.info["purge_queue_urls"]
            floor_body = events.webhook_body(ids[0], location).decode()
            for run in range(args.runs):
                log(f"run {run + 1}/{args.runs}: cold starts, warm receiver, RSS")
                results.keep("load", os.getloadavg()[0])
                nonce = f"{time.time_ns()}"
                floor = run_probe(
                    {
                        "kind": "floor",
                        "queue_url": queue_url,
                        "body": floor_body,
                        "nonce": nonce,
                        "records": args.records,
                        "purge": purge,
                    },
                    env,
                    work,
                )
                rest = events.write_jsonl(
                    work / f"receiver-{run}.jsonl",
                    (events.api_event(ids[i % len(ids)], location) for i in range(args.records - 1)),
                )
                receiver = run_probe(
                    {
                        "kind": "receiver",
                        "first": events.api_event(ids[0], location),
                        "rest": str(rest),
                        "purge": purge,
                    },
                    env,
                    work,
                )
                eager = run_probe(
                    {
                        "kind": "receiver",
                        "first": events.api_event(ids[0], location),
                        "preimport": EAGER_RECEIVER_IMPORTS,
                    },
                    env,
                    work,
                )
                rss = services.info["rss_appointments"]
                records = (events.sqs_record(*rss[i % len(rss)]) for i in range(args.records - 1))
                enricher_rest = events.write_jsonl(work / f"enricher-{run}.jsonl", _batches_of(records))
                enricher = run_probe(
                    {
                        "kind": "enricher",
                        "impl": "enricher",
                        "first": events.sqs_event([events.sqs_record(ids[1], location)]),
                        "rest": str(enricher_rest),
                        "purge": purge,
                    },
                    env,
                    work,
                )
                # The same two cold starts with the handlers' gc.disable()/gc.freeze() as no-ops.
                for kind, figure, base in (
                    ("receiver", "receiver_cold_gc", receiver),
                    ("enricher", "enricher_cold_gc", enricher),
                ):
                    spec = {"kind": kind, "gc_untouched": True, "impl": "enricher"}
                    spec["first"] = (
                        events.api_event(ids[0], location)
                        if kind == "receiver"
                        else events.sqs_event([events.sqs_record(ids[4 % len(ids)], location)])
                    )
                    results.fig(figure).add(run_probe(spec, env, work)["cold_ms"], base["cold_ms"])
                naive = run_probe(
                    {
                        "kind": "enricher",
                        "impl": "naive",
                        "first": events.sqs_event([events.sqs_record(ids[2], location)]),
                    },
                    env,
                    work,
                )
                peer: dict[str, Any] | None = None
                if peer_python is not None:
                    peer = run_probe(
                        {
                            "kind": "peer",
                            "base_url": services.info["sandbox_url"],
                            "token": SANDBOX_TOKEN,
                            "appointment_id": ids[3],
                            "api_version": _api_version(),
                        },
                        env,
                        work,
                        peer_python=str(peer_python),
                    )
                _collect_cold(results, floor, receiver, eager, enricher, naive, peer)
                if runtime_python is not None:
                    _runtime_cold(
                        results, str(runtime_python), env, work, floor_body, queue_url, purge, ids, location
                    )

            log("warm batches at 100 ms upstream latency: product, naive, product without shares")
            no_share = {k: v for k, v in env.items() if k != "ENRICHER_MAXIMUM_CONCURRENCY"}
            for impl, impl_env, shapes in (
                ("enricher", env, None),
                ("naive", env, None),
                # the quiet batch again without the containers' own budget shares (no
                # ENRICHER_MAXIMUM_CONCURRENCY): what each quiet location's lease costs
                ("no-share", no_share, ["quiet"]),
                # the distinct batch again with every fetch after the ledger read (the order
                # before first receives were fetched beside it)
                ("read-first", env, ["distinct"]),
            ):
                pairs = events.write_batch_pairs(
                    work / f"batches-{impl}.jsonl",
                    ids,
                    location,
                    args.batches + 2,
                    spread=services.info["related_appointments"],
                    local=services.info["local_appointment_ids"],
                    quiet=services.info["quiet_sets"],
                )
                batch = run_probe(
                    {
                        "kind": "batch",
                        "impl": "enricher" if impl in ("no-share", "read-first") else impl,
                        "fetch_after_read": impl == "read-first",
                        **({"shapes": shapes} if shapes else {}),
                        "sandbox_url": services.info["sandbox_url"],
                        "latency_ms": LATENCY_MS,
                        "batches": str(pairs),
                        "purge": purge,
                        **(
                            {"quiet_warmup": str(_quiet_warmup(work / f"quiet-{impl}.jsonl", services))}
                            if shapes is None or "quiet" in shapes
                            else {}
                        ),
                        "warmup": 2,
                        "pause_s": BATCH_PAUSE_S,
                        "floor_id": ids[0],
                        "token": SANDBOX_TOKEN,
                        "topic_arn": services.env["OUTPUT_TOPIC_ARN"],
                        "micro": 0 if shapes else args.micro,
                    },
                    impl_env,
                    work,
                )
                _collect_variant(results, impl, batch)

            bench_related(services, work, args, results, log)

            log("warm CPU per record")
            cpu = run_probe(
                {
                    "kind": "cpu",
                    "record": events.sqs_record(ids[0], location),
                    "upstream_body": json.dumps({"event": {**_served_event(), "id": ids[0]}}),
                    "iterations": args.cpu_iterations,
                    "repeats": max(5, args.runs),
                },
                env,
                work,
            )
            for sample in cpu["samples"]:
                results.fig("cpu_us").add(sample["cpu_us"])
                results.fig("cpu_wall_us").add(sample["wall_us"])
            for name, value in cpu.get("init_micro", {}).items():
                results.fig(name).add(value)
    finally:
        services.close()
    return results, {"peer_versions": peer_versions, "runtime_versions": runtime_versions}


def _runtime_cold(
    results: Results,
    python: str,
    env: dict[str, str],
    work: Path,
    floor_body: str,
    queue_url: str,
    purge: list[str],
    ids: list[str],
    location: str,
) -> None:
    """The floor, the receiver's and the enricher's cold starts on the template's runtime Python,
    right after the same run's on the bench's own (context: the goals are measured on the latter)."""
    floor = run_probe(
        {
            "kind": "floor",
            "queue_url": queue_url,
            "body": floor_body,
            "nonce": f"{time.time_ns()}-rt",
            "purge": purge,
        },
        env,
        work,
        python=python,
    )
    receiver = run_probe(
        {"kind": "receiver", "first": events.api_event(ids[0], location), "purge": purge},
        env,
        work,
        python=python,
    )
    enricher = run_probe(
        {
            "kind": "enricher",
            "impl": "enricher",
            "first": events.sqs_event([events.sqs_record(ids[1], location)]),
            "purge": purge,
        },
        env,
        work,
        python=python,
    )
    results.fig("runtime_floor_cold").add(floor["cold_ms"])
    results.fig("runtime_receiver_cold").add(receiver["cold_ms"], floor["cold_ms"])
    results.fig("runtime_enricher_cold").add(enricher["cold_ms"], floor["cold_ms"])


# The related-entity bench's builds: the same enricher without ENRICH_RELATED, with all four
# entities and the per-container cache warm (the warm-up batches filled it), and with all four and
# no cache (every entity fetched in every batch: the upper bound of a cold container).
RELATED_ALL = "contact,calendar,assignedUser,location"
RELATED_MODES: dict[str, dict[str, str]] = {
    "off": {},
    "warm": {"ENRICH_RELATED": RELATED_ALL},
    "cold": {"ENRICH_RELATED": RELATED_ALL, "RELATED_CACHE_SECONDS": "0", "CONTACT_CACHE_SECONDS": "0"},
}

# Seconds (untimed) before each pair of the main batch probes. One process is one container: its
# own share of a location's budget (nine requests per 10 s at the template's five containers)
# plus the shared bucket (about five per second) serve the pair's ten-in-one-location batch when
# pairs come a couple of seconds apart; back to back (eight requests a second in that location
# from one container, which the event source would spread over several) the budget binds and
# items are handed back, which the bench's synthetic receipts cannot be (make soak-bulk's subject).
BATCH_PAUSE_S = 1.0

# Seconds between two batches of the related-entity bench: each location's appointment and four
# entities (five requests) fit the container's own share of nine per 10 s, or one lease of five
# past it, so no location's fleet budget binds (that is make soak-bulk's subject, not this bench's).
RELATED_PAUSE_S = 1.0
# Seconds after the warm-up batches, before the timed ones: more than the budget's window, which
# the warm-up's entity fetches spent (bench.probe, ``settle_s``).
RELATED_SETTLE_S = 10.5


def bench_related(
    services: Services, work: Path, args: argparse.Namespace, results: Results, log: Callable[[str], None]
) -> None:
    """The warm-batch probe on batches of ten appointments in ten locations, once per build of
    ``RELATED_MODES`` per round (the order reversed every other round, so drift on a shared machine
    does not favour one build): latency against one round trip, upstream requests and AWS calls."""
    spread: list[list[str]] = services.info["related_appointments"]
    modes = list(RELATED_MODES)
    for round_ in range(args.related_rounds):
        for mode in modes if round_ % 2 == 0 else modes[::-1]:
            log(f"related entities, round {round_ + 1}/{args.related_rounds}: {mode}")
            batches = events.write_spread_batches(
                work / f"related-{mode}-{round_}.jsonl", spread, args.batches + 2
            )
            batch = run_probe(
                {
                    "kind": "batch",
                    "impl": "enricher",
                    "shapes": ["distinct"],
                    "pause_s": RELATED_PAUSE_S,
                    "settle_s": RELATED_SETTLE_S,
                    "sandbox_url": services.info["sandbox_url"],
                    "latency_ms": LATENCY_MS,
                    "batches": str(batches),
                    "purge": services.info["purge_queue_urls"],
                    "warmup": 2,
                    "floor_id": spread[0][0],
                    "token": SANDBOX_TOKEN,
                    "topic_arn": services.env["OUTPUT_TOPIC_ARN"],
                    "micro": 0,
                },
                child_env(services, **RELATED_MODES[mode]),
                work,
            )
            collect_related(results, mode, batch, records=len(spread))


def _quiet_warmup(path: Path, services: Services) -> Path:
    """Every quiet set once (the probe's untimed warm-up of the quiet batch)."""
    return events.write_jsonl(
        path,
        (
            events.sqs_event([events.sqs_record(a, loc) for a, loc in quiet])
            for quiet in services.info["quiet_sets"]
        ),
    )


def _collect_variant(results: Results, impl: str, batch: dict[str, Any]) -> None:
    """A warm-batch probe's figures: the product and the naive in full, the variants their one shape."""
    if impl == "read-first":
        for ms, floor in zip(batch["distinct_ms"], batch["floor_ms"], strict=True):
            results.fig("product_distinct_read_first").add(ms, floor)
    elif impl == "no-share":
        for ms, floor in zip(batch["quiet_ms"], batch["floor_ms"], strict=True):
            results.fig("product_quiet_no_share").add(ms, floor)
        results.keep("product_quiet_no_share_calls", per_unit(batch["quiet_aws"], "calls", 1))
    else:
        _collect_batch(results, impl, batch)


def collect_related(results: Results, mode: str, batch: dict[str, Any], *, records: int) -> None:
    """One probe's batches: ``related_<mode>`` (ms, with the round trip of the same pair),
    ``related_<mode>_requests`` (upstream requests per record) and each batch's AWS calls."""
    for ms, floor in zip(batch["distinct_ms"], batch["floor_ms"], strict=True):
        results.fig(f"related_{mode}").add(ms, floor)
    for own, related in zip(batch["distinct_upstream"], batch["distinct_related"], strict=True):
        results.fig(f"related_{mode}_requests").add((own + related) / records)
    for snapshot in batch["distinct_aws"]:
        results.keep(f"related_{mode}_aws", snapshot)


def _served_event() -> dict[str, Any]:
    from bench.services import sample_event  # noqa: PLC0415

    return sample_event()


def _collect_cold(
    results: Results,
    floor: dict[str, Any],
    receiver: dict[str, Any],
    eager: dict[str, Any],
    enricher: dict[str, Any],
    naive: dict[str, Any],
    peer: dict[str, Any] | None,
) -> None:
    f = floor["cold_ms"]
    results.fig("floor_cold").add(f)
    results.fig("floor_cold_send").add(floor["cold_plus_send_ms"])
    results.fig("receiver_cold").add(receiver["cold_ms"], f)
    results.fig("receiver_cold_vs_send").add(receiver["cold_ms"], floor["cold_plus_send_ms"])
    results.fig("receiver_cold_eager").add(eager["cold_ms"], receiver["cold_ms"])
    results.fig("enricher_cold").add(enricher["cold_ms"], f)
    results.fig("naive_cold").add(naive["cold_ms"], f)
    results.fig("receiver_rss").add(receiver["rss_mb"])
    results.fig("receiver_rss_first").add(receiver["rss_first_mb"])
    results.fig("enricher_rss").add(enricher["rss_mb"])
    results.fig("enricher_rss_first").add(enricher["rss_first_mb"])
    results.fig("floor_rss").add(floor["rss_mb"])
    results.keep("receiver_records", receiver["records"])
    results.keep("enricher_records", enricher["records"])
    if receiver["warm_ms"] and floor["warm_ms"]:
        results.fig("receiver_p50").add(percentile(receiver["warm_ms"], 50), percentile(floor["warm_ms"], 50))
        results.fig("receiver_p99").add(percentile(receiver["warm_ms"], 99), percentile(floor["warm_ms"], 99))
        results.fig("floor_p50").add(percentile(floor["warm_ms"], 50))
        results.fig("floor_p99").add(percentile(floor["warm_ms"], 99))
        results.keep("receiver_aws", receiver["aws"])
        results.keep("receiver_warm_n", len(receiver["warm_ms"]))
    if peer is not None:
        results.fig("peer_cold").add(peer["cold_ms"])
        results.fig("peer_import").add(peer["import_ms"])
        results.fig("peer_rss").add(peer["rss_mb"])
        results.fig("enricher_cold_vs_peer").add(enricher["cold_ms"], peer["cold_ms"])
        results.fig("receiver_rss_vs_peer").add(receiver["rss_mb"], peer["rss_mb"])
        results.fig("enricher_rss_vs_peer").add(enricher["rss_mb"], peer["rss_mb"])


def _collect_batch(results: Results, impl: str, batch: dict[str, Any]) -> None:
    prefix = "product" if impl == "enricher" else "naive"
    for d, s, floor in zip(batch["distinct_ms"], batch["same_ms"], batch["floor_ms"], strict=True):
        results.fig(f"{prefix}_distinct").add(d, floor)
        results.fig(f"{prefix}_same").add(s, floor)
        results.fig(f"{prefix}_floor").add(floor)
    for n in batch["distinct_upstream"]:
        results.fig(f"{prefix}_distinct_upstream").add(n)
    for n in batch["same_upstream"]:
        results.fig(f"{prefix}_same_upstream").add(n)
    results.keep(f"{prefix}_distinct_aws", per_unit(batch["distinct_aws"], "chunks", 1))
    results.keep(f"{prefix}_distinct_calls", per_unit(batch["distinct_aws"], "calls", 1))
    results.keep(f"{prefix}_same_calls", per_unit(batch["same_aws"], "calls", 1))
    # ten appointments in one location (the budget's leases filled); ten in quiet locations (each
    # request its location's first in the window: the container's own share, no lease)
    for shape in ("local", "quiet"):
        if batch.get(f"{shape}_aws"):
            for ms, floor in zip(batch[f"{shape}_ms"], batch["floor_ms"], strict=True):
                results.fig(f"{prefix}_{shape}").add(ms, floor)
            results.keep(f"{prefix}_{shape}_aws", per_unit(batch[f"{shape}_aws"], "chunks", 1))
            results.keep(f"{prefix}_{shape}_calls", per_unit(batch[f"{shape}_aws"], "calls", 1))
    for name in (
        *("session_ms", "new_conn_ms", "publish_batch_ms", "publish_single_ms"),
        *("get_cpu_env_us", "get_cpu_once_us", "publish_cpu_twice_us", "publish_cpu_once_us"),
    ):
        for value in batch.get(name, []):
            results.fig(f"micro_{name}").add(value)
