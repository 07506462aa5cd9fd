"""Cold-start hygiene of the three handlers, loaded for real against the local stack.

Each handler turns the collector off before its imports and freezes what init built (see the
top of ``functions/webhook/app.py``): no collection runs while the container initialises, the
collector is on again for the invocations, and init's objects are out of every later collection.
A failed init must not leave the collector off in the process that loaded it (the dev loader).
"""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from appointment_enricher.errors import ConfigError
from dev.fakes.lambda_loader import REPO_ROOT, load_function_module

pytestmark = pytest.mark.integration


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that starts while the fixture is active."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(int(info["generation"]))

    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)


@pytest.mark.parametrize("name", ["webhook", "enricher", "reconciler"])
def test_init_runs_without_a_collection_and_freezes_what_it_built(
    stack_env: dict[str, str], collections: list[int], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    if name == "reconciler":
        monkeypatch.setenv("RECONCILE_LOCATION_IDS", "loc_cold_1")
    assert gc.isenabled()
    gc.collect()  # start from empty generations, so only init's own allocations could trigger one
    collections.clear()
    frozen_before = gc.get_freeze_count()
    module = load_function_module(name)
    assert collections == [], f"{name}: init ran {len(collections)} collections"
    assert gc.isenabled(), f"{name}: the collector is still off after init"
    assert gc.get_freeze_count() > frozen_before
    assert callable(module.lambda_handler)


def test_a_failed_init_leaves_the_collector_on(
    stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_AGE_SECONDS", "not-a-number")
    with pytest.raises(ConfigError):
        load_function_module("webhook")
    assert gc.isenabled()


def test_the_enricher_does_not_build_the_reconcilers_validator() -> None:
    """pydantic builds a model's validator when the class is created unless ``defer_build``: the
    enricher imports ``config.pipeline`` and must not pay for ``ReconcilerSettings``."""
    probe = (
        "import appointment_enricher.config.pipeline as p;"
        "print(p.EnricherSettings.__pydantic_complete__, p.ReconcilerSettings.__pydantic_complete__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT / "layers" / "shared"), "PYDANTIC_DISABLE_PLUGINS": "__all__"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["True", "False"]
