"""ReconcilerSettings: the reconciler's variables fail the cold start naming the variable."""

from __future__ import annotations

import pytest

from appointment_enricher.config import ConfigError, ReconcilerSettings

BASE = {"INGEST_QUEUE_URL": "https://sqs/q.fifo", "LEDGER_TABLE_NAME": "ledger", "POWERLEADS_TOKEN": "t"}


def test_defaults_and_location_list() -> None:
    settings = ReconcilerSettings.from_env({**BASE, "RECONCILE_LOCATION_IDS": " LocA, LocB ,,"})
    assert settings.RECONCILE_LOCATION_IDS == ["LocA", "LocB"]
    assert (settings.RECONCILE_LOOKBACK_DAYS, settings.RECONCILE_LOOKAHEAD_DAYS) == (7, 90)
    assert settings.RECONCILE_REQUESTS_PER_10S == 20
    assert ReconcilerSettings.from_env(BASE).RECONCILE_LOCATION_IDS == []
    assert "POWERLEADS_TOKEN=" not in repr(ReconcilerSettings.from_env(BASE))  # never logged


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"RECONCILE_LOCATION_IDS": "LocA,../etc"}, "RECONCILE_LOCATION_IDS"),
        ({"RECONCILE_LOOKAHEAD_DAYS": "-1"}, "RECONCILE_LOOKAHEAD_DAYS"),
        ({"RECONCILE_REQUESTS_PER_10S": "100"}, "RECONCILE_REQUESTS_PER_10S"),
        ({"LEDGER_TABLE_NAME": ""}, "LEDGER_TABLE_NAME"),
        ({"INGEST_QUEUE_URL": ""}, "INGEST_QUEUE_URL"),
        ({"POWERLEADS_TOKEN": ""}, "POWERLEADS_TOKEN_SECRET_ID"),
    ],
)
def test_a_bad_variable_is_named(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        ReconcilerSettings.from_env({**BASE, **change})
