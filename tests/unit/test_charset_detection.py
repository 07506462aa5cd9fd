"""The functions that call PowerLeads load ``requests`` without a character-set detector
(``powerleads.detection``: ~7 ms of every cold start) and still read every JSON body."""

from __future__ import annotations

import sys
import textwrap

import pytest

from appointment_enricher.powerleads.detection import DETECTORS, skip_charset_detection
from tests.fresh import FUNCTION_ENV, run_fresh

ENV = {**FUNCTION_ENV, "POWERTOOLS_SERVICE_NAME": "charset-detection"}

# Loads a function's app.py in a fresh interpreter (as Lambda does), then reads a UTF-8 JSON body
# that declares no charset through requests, as the client does, and reports what was imported.
PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys, warnings
    warnings.simplefilter("error")  # a warning at import (requests' missing detector) fails the probe
    sys.path[:0] = [sys.argv[1] + "/layers/shared", sys.argv[1]]
    path = sys.argv[1] + "/functions/" + sys.argv[2] + "/app.py"
    spec = importlib.util.spec_from_file_location("app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.lambda_handler)
    import requests
    response = requests.models.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps({"title": "Caf\\u00e9 \\u2615"}, ensure_ascii=False).encode()
    loaded = sorted(name for name, value in sys.modules.items() if value is not None)
    print(json.dumps({"loaded": loaded, "json": response.json(), "text": response.text}))
    """
)


@pytest.mark.parametrize("function", ["enricher", "reconciler"])
def test_a_cold_start_imports_no_charset_detector_and_reads_utf8_json(function: str) -> None:
    report = run_fresh(PROBE, function, env=ENV)
    assert "requests" in report["loaded"]  # the probe really loaded the HTTP client
    assert {name for name in report["loaded"] if name.split(".")[0] in DETECTORS} == set()
    assert report["json"] == {"title": "Caf\u00e9 \u2615"}
    assert report["text"] == '{"title": "Caf\u00e9 \u2615"}'


def test_too_late_once_requests_is_loaded() -> None:
    """In a process that already holds requests (this one), blocking would save nothing and could
    break a detector someone else imported: the call changes nothing."""
    import requests  # noqa: F401, PLC0415 - the precondition of this test

    before = {name: sys.modules.get(name) for name in DETECTORS}
    assert skip_charset_detection() is False
    assert {name: sys.modules.get(name) for name in DETECTORS} == before
