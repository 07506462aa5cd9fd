"""The enricher's environment: defaults, validation, and errors that name the variable."""

from __future__ import annotations

import traceback

import pytest

from appointment_enricher.config import ConfigError, EnricherSettings

BASE = {"QUARANTINE_QUEUE_URL": "https://sqs/q", "OUTPUT_TOPIC_ARN": "arn:t", "POWERLEADS_TOKEN": "t"}


def test_defaults_follow_the_contract() -> None:
    settings = EnricherSettings.from_env(BASE)
    assert settings.POWERLEADS_API_BASE_URL == "https://services.leadconnectorhq.com"
    assert settings.POWERLEADS_API_VERSION == "2021-04-15"
    assert settings.IDEMPOTENCY_TABLE_NAME is None
    assert settings.idempotency_ttl_seconds == 2 * 86400
    assert settings.LEDGER_TABLE_NAME is None and settings.NOT_FOUND_GRACE_SECONDS == 120
    assert settings.SUPPRESS_UNCHANGED_RECORDS is False


def test_idempotency_ttl_is_twice_the_webhook_max_age() -> None:
    assert (
        EnricherSettings.from_env({**BASE, "WEBHOOK_MAX_AGE_SECONDS": "600"}).idempotency_ttl_seconds == 1200
    )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"QUARANTINE_QUEUE_URL": ""}, "QUARANTINE_QUEUE_URL"),
        ({"OUTPUT_TOPIC_ARN": ""}, "OUTPUT_TOPIC_ARN"),
        ({"POWERLEADS_TOKEN": ""}, "POWERLEADS_TOKEN_SECRET_ID"),
        ({"ENRICHER_MAX_WORKERS": "0"}, "ENRICHER_MAX_WORKERS"),
        ({"POWERLEADS_MAX_ATTEMPTS": "lots"}, "POWERLEADS_MAX_ATTEMPTS"),
        ({"WEBHOOK_MAX_AGE_SECONDS": "-1"}, "WEBHOOK_MAX_AGE_SECONDS"),
        ({"NOT_FOUND_GRACE_SECONDS": "-5"}, "NOT_FOUND_GRACE_SECONDS"),
        ({"SUPPRESS_UNCHANGED_RECORDS": "true"}, "LEDGER_TABLE_NAME"),
    ],
)
def test_bad_configuration_names_the_variable(changes: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        EnricherSettings.from_env({**BASE, **changes})


def test_the_token_never_appears_in_repr() -> None:
    assert "super-secret" not in repr(EnricherSettings.from_env({**BASE, "POWERLEADS_TOKEN": "super-secret"}))


def test_a_config_error_carries_no_value_in_its_message_or_traceback() -> None:
    env = {"POWERLEADS_TOKEN": "super-secret", "QUARANTINE_QUEUE_URL": "https://sqs/q"}  # no output
    with pytest.raises(ConfigError) as raised:
        EnricherSettings.from_env(env)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    printed = "".join(traceback.format_exception(raised.value))
    assert "OUTPUT_TOPIC_ARN" in printed and "super-secret" not in printed


def test_webhook_max_age_is_bounded() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_MAX_AGE_SECONDS"):
        EnricherSettings.from_env({**BASE, "WEBHOOK_MAX_AGE_SECONDS": str(10**12)})


@pytest.mark.parametrize("name", ["QUARANTINE_QUEUE_URL", "DEAD_LETTER_QUEUE_URL"])
def test_either_name_of_the_quarantine_queue_configures_the_enricher(name: str) -> None:
    env = {"OUTPUT_TOPIC_ARN": "arn:t", "POWERLEADS_TOKEN": "t", name: "https://sqs/quarantine"}
    assert EnricherSettings.from_env(env).QUARANTINE_QUEUE_URL == "https://sqs/quarantine"


def test_the_new_quarantine_name_wins_over_the_old_one() -> None:
    env = {**BASE, "QUARANTINE_QUEUE_URL": "https://sqs/new", "DEAD_LETTER_QUEUE_URL": "https://sqs/old"}
    assert EnricherSettings.from_env(env).QUARANTINE_QUEUE_URL == "https://sqs/new"


def test_a_missing_quarantine_queue_names_both_variables() -> None:
    env = {"OUTPUT_TOPIC_ARN": "arn:t", "POWERLEADS_TOKEN": "t"}
    with pytest.raises(ConfigError, match="QUARANTINE_QUEUE_URL or DEAD_LETTER_QUEUE_URL"):
        EnricherSettings.from_env(env)
