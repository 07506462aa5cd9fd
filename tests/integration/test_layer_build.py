"""``sam build``'s layer target (layers/shared/Makefile) ships bytecode for every module.

SAM's python3.13 build method extracts the wheels and copies the sources without compiling, and
/opt is read-only on Lambda, so the layer would be compiled again in every cold start. The
target is run here as SAM runs it, with the download step switched off (``PIP_INSTALL=true``) and
this interpreter standing in for the runtime's: every ``.py`` must have its ``.pyc`` for that
interpreter, hash-based and unchecked (the zip keeps no exact source mtimes).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from dev.fakes.lambda_loader import REPO_ROOT

pytestmark = pytest.mark.integration

MAKEFILE = REPO_ROOT / "layers" / "shared" / "Makefile"
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def build(artifacts: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    settings = {
        "PIP_INSTALL": "true",
        "LAYER_PYTHON": sys.executable,
        "RUNTIME_VERSION": VERSION,
        **variables,
    }
    return subprocess.run(
        ["make", "-s", "-f", str(MAKEFILE), "build-SharedLayer", f"ARTIFACTS_DIR={artifacts}"]
        + [f"{k}={v}" for k, v in settings.items()],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_module_of_the_layer_ships_unchecked_hash_bytecode(tmp_path: Path) -> None:
    done = build(tmp_path)
    assert done.returncode == 0, done.stderr
    package = tmp_path / "python" / "appointment_enricher"
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 20
    shipped = {p.relative_to(package) for p in sources}
    expected = {
        p.relative_to(REPO_ROOT / "layers/shared/appointment_enricher")
        for p in (REPO_ROOT / "layers/shared/appointment_enricher").rglob("*.py")
    }
    assert shipped == expected
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        assert compiled.is_file(), f"no bytecode for {source.relative_to(tmp_path)}"
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{compiled.name}: flags {flags:#b} (want hash-based, unchecked)"
    stray = [p for p in tmp_path.rglob("*.pyc") if sys.implementation.cache_tag not in p.name]
    assert stray == []  # nothing compiled by another interpreter (a developer's __pycache__)


def test_a_python_other_than_the_runtimes_is_refused(tmp_path: Path) -> None:
    done = build(tmp_path, RUNTIME_VERSION="3.99")
    assert done.returncode != 0
    assert "the runtime is 3.99" in done.stderr
    assert not (tmp_path / "python").exists()


def test_the_target_needs_sams_artifacts_dir() -> None:
    done = subprocess.run(
        ["make", "-s", "-f", str(MAKEFILE), "build-SharedLayer", "ARTIFACTS_DIR="],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "ARTIFACTS_DIR is not set" in done.stderr
