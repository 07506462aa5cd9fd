"""The peer: the official SDK ``gohighlevel-api-client`` 3.0.0, import + first ``get_appointment``.

Run by the peer venv's interpreter (``bench/out/peer-venv``), standalone (stdlib + the SDK only):
``python bench/peer_probe.py <spec.json> <result.json>``. Like ``bench.probe``, the clock starts
after the inputs are read and covers the SDK import, client construction and the first fetch
against the same sandbox the enricher uses.

Pointing the SDK at the sandbox (read from its source, ``highlevel/highlevel.py`` and
``services/calendars/calendars.py``): the client builds ``httpx.AsyncClient(base_url=
HighLevel.BASE_URL)`` in ``__init__``, so the class attribute is set before construction; each
call forces ``Version: <instance>.API_VERSION`` (``"v3"`` by default, which the real Get
Appointment and the sandbox reject), so the instance attribute is set to the product's version,
which ``bench.harness`` passes in the spec (``api_version``, from ``wire.DEFAULT_API_VERSION``).
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    t0 = time.perf_counter()
    import asyncio  # noqa: PLC0415 - the SDK is async-only: part of its cost

    highlevel = importlib.import_module("highlevel")
    t_import = time.perf_counter()
    highlevel.HighLevel.BASE_URL = spec["base_url"]
    client = highlevel.HighLevel(private_integration_token=spec["token"], log_level="error")
    client.API_VERSION = spec["api_version"]
    response = asyncio.run(client.calendars.get_appointment(spec["appointment_id"]))
    cold = time.perf_counter() - t0
    event = response.get("event") if isinstance(response, dict) else None
    if not isinstance(event, dict) or event.get("id") != spec["appointment_id"]:
        raise SystemExit(f"peer fetch did not return the appointment: {str(response)[:300]}")
    result = {
        "cold_ms": round(cold * 1000, 3),
        "import_ms": round((t_import - t0) * 1000, 3),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
