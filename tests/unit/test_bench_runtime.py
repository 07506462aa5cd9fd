"""The bench's context rows on the template's runtime: which interpreter counts as Python 3.13."""

from __future__ import annotations

import subprocess
import sys

from bench.harness import RUNTIME_VERSION, find_runtime_python


def test_an_interpreter_of_another_version_is_never_taken() -> None:
    found = find_runtime_python({"PYTHON313": sys.executable})  # this one is not 3.13
    assert found != sys.executable or sys.version_info[:2] == RUNTIME_VERSION
    if found is not None:  # python3.13 on the PATH, or pyenv's
        probe = [found, "-c", "import sys; print(sys.version_info[:2])"]
        version = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
        assert version == str(RUNTIME_VERSION)


def test_a_missing_interpreter_is_skipped() -> None:
    found = find_runtime_python({"PYTHON313": "/nonexistent/python3.13"})
    assert found != "/nonexistent/python3.13"
