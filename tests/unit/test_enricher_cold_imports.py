"""What an enricher cold start loads: the default build (no ``ENRICH_RELATED``) leaves the related
entities' fetcher and models unloaded, and pydantic parses no text signature (which compiles the
tokenizer's patterns, 1.4 ms); a build that names related entities loads them at init."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from tests.fresh import FUNCTION_ENV, run_fresh

ENV = {**FUNCTION_ENV, "POWERTOOLS_SERVICE_NAME": "cold-imports"}
RELATED_MODULES = {"appointment_enricher.enrich.related", "appointment_enricher.entities"}

# Loads the enricher's app.py in a fresh interpreter (as Lambda does) and reports what it imported
# and how many patterns the tokenizer compiled (``inspect`` parses text signatures with it).
PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    sys.path[:0] = [sys.argv[1] + "/layers/shared", sys.argv[1]]
    spec = importlib.util.spec_from_file_location("app", sys.argv[1] + "/functions/enricher/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenize = sys.modules.get("tokenize")
    compiled = tokenize._compile.cache_info().currsize if tokenize is not None else 0
    print(json.dumps({"loaded": sorted(sys.modules), "tokenizer_patterns": compiled,
                      "related": module.service.related is not None}))
    """
)


def _cold_start(**env: str) -> dict[str, Any]:
    return run_fresh(PROBE, env={**ENV, **env})


def test_the_default_build_loads_no_related_entities_and_parses_no_signature() -> None:
    report = _cold_start()
    loaded = set(report["loaded"])
    assert "appointment_enricher.enrich.service" in loaded  # the probe really built the enricher
    assert report["related"] is False
    assert loaded & RELATED_MODULES == set()
    assert report["tokenizer_patterns"] == 0


@pytest.mark.parametrize("kinds", ["contact", "calendar,location"])
def test_a_related_build_loads_them_at_init(kinds: str) -> None:
    report = _cold_start(ENRICH_RELATED=kinds)
    assert report["related"] is True
    assert set(report["loaded"]) >= RELATED_MODULES
