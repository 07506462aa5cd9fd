"""One set of wire rules: the receiver and the tooling (dev/, bench/, cli/) use ``wire`` rather than
copies of its rules. A copy drifts: the receiver would accept what the tooling cannot build, or
the other way round. This scans the source for the tell-tale fragments of each rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import python_files

ROOT = Path(__file__).resolve().parents[2]
WIRE = ROOT / "layers" / "shared" / "appointment_enricher" / "wire.py"
SCANNED = [
    ROOT / "layers" / "shared" / "appointment_enricher" / "intake" / "receiver.py",
    ROOT / "functions" / "webhook" / "app.py",
    *python_files(ROOT / "dev"),
    *python_files(ROOT / "bench"),
    *python_files(ROOT / "cli" / "plenrich"),
]
# fragment -> the wire rule it would copy
COPIES = {
    r"A-Za-z0-9_-\]\{1,128\}": "the id pattern (wire.is_valid_id / ID_PATTERN)",
    r"A-Za-z0-9_\.:-\]": "the verbatim webhookId pattern (wire.webhook_dedupe_id)",
    r"[\"']receivedAt[\"']\s*:": "building an ingest message (wire.IngestMessage.encode)",
    r"object_pairs_hook": "strict JSON (wire.parse_json_object)",
    r"256\s*\*\s*1024": "the body limit (wire.MAX_BODY_BYTES)",
}


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_second_copy_of_a_wire_rule(path: Path) -> None:
    text = path.read_text()
    found = [rule for fragment, rule in COPIES.items() if re.search(fragment, text)]
    assert not found, f"{path.relative_to(ROOT)} copies {found}: use appointment_enricher.wire"


def test_the_fragments_do_match_wire_itself() -> None:
    """The scan would catch a copy: every fragment occurs in wire.py, where the rules live."""
    text = WIRE.read_text()
    for fragment in COPIES:
        assert re.search(fragment, text), fragment


# ---- defaults: defined once (wire.py; upstream timeouts and retries in powerleads/client.py) -------------

DEFAULTS = {
    r"leadconnectorhq\.com": "the upstream base URL (wire.DEFAULT_API_BASE_URL)",
    r"2021-04-15": "the upstream API version (wire.DEFAULT_API_VERSION)",
    r"default=86_?400|[\"']86_?400[\"']|2 \* 86_?400": "the replay window (wire.DEFAULT_MAX_AGE_SECONDS)",
    r"default=120\b": "the not-found grace (wire.DEFAULT_NOT_FOUND_GRACE_SECONDS)",
    r"3\.05": "the upstream timeouts (powerleads.DEFAULT_TIMEOUT)",
}
PACKAGE = ROOT / "layers" / "shared" / "appointment_enricher"
DEFAULT_USERS = [
    *sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if p not in {PACKAGE / "wire.py", PACKAGE / "powerleads" / "client.py"}
    ),
    *sorted((ROOT / "functions").glob("*/app.py")),
    ROOT / "dev" / "stack" / "awslocal.py",
    ROOT / "dev" / "stack" / "run.py",
    *sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "report.py"),  # report.py: report prose
]


@pytest.mark.parametrize("path", DEFAULT_USERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_second_copy_of_a_default(path: Path) -> None:
    text = path.read_text()
    found = [rule for fragment, rule in DEFAULTS.items() if re.search(fragment, text)]
    assert not found, f"{path.relative_to(ROOT)} repeats {found}: import it"


def test_the_default_fragments_match_where_the_defaults_live() -> None:
    text = WIRE.read_text() + (PACKAGE / "powerleads" / "client.py").read_text()
    assert re.search(r"leadconnectorhq\.com", text) and re.search(r"2021-04-15", text)
    assert re.search(r"3\.05", text)
    assert re.search(r"86_?400", text) and re.search(r"\b120\b", text)
