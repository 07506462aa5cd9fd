"""One base error that classifies failures, and one configuration error for every function."""

from __future__ import annotations

import pytest

from appointment_enricher import errors, wire
from appointment_enricher.config import intake as config
from appointment_enricher.errors import ConfigError, EnricherError, classify
from appointment_enricher.intake import signatures
from appointment_enricher.ledger import base as ledger
from appointment_enricher.powerleads import client as powerleads
from appointment_enricher.powerleads import secret_store, tokens


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (powerleads.UpstreamUnavailable, True),
        (powerleads.UpstreamAuthError, True),
        (powerleads.UpstreamRejected, False),
        (powerleads.InvalidUpstreamBody, False),
        (powerleads.AppointmentNotFound, False),
        (tokens.TokenUnavailable, True),
        (secret_store.OAuthError, True),
        (ledger.LedgerConflict, True),
        (ledger.UnprocessedKeys, True),
        (wire.WireError, False),
        (ConfigError, False),
    ],
)
def test_the_package_errors_say_how_they_are_classified(error: type[EnricherError], retryable: bool) -> None:
    assert issubclass(error, EnricherError)
    assert error.retryable is retryable
    assert error.error_type and error.error_type != EnricherError.error_type
    instance = error("e", "m") if error is wire.WireError else error("m")
    assert classify(instance) == (error.error_type, retryable)


def test_an_exception_that_is_not_ours_is_retryable() -> None:
    assert classify(KeyError("x")) == ("KeyError", True)


def test_one_config_error_for_every_function() -> None:
    assert config.ConfigError is errors.ConfigError is signatures.ConfigError
    with pytest.raises(ConfigError, match="INGEST_QUEUE_URL"):
        config.ReceiverConfig.from_env({})
    with pytest.raises(ConfigError, match="WEBHOOK_ED25519_PUBLIC_KEY"):
        signatures.SignatureVerifier.from_pem("garbage")
