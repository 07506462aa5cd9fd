"""The cut service models (``appointment_enricher/aws/models``): current with the pinned botocore,
used by the product's clients, and holding every operation the code calls."""

from __future__ import annotations

import re
from pathlib import Path

import aws_lambda_powertools
import pytest
from botocore import xform_name
from botocore.loaders import Loader

from appointment_enricher.aws import sdk
from appointment_enricher.aws.service_models import MODELS_DIR, OPERATIONS
from dev.tools.trim_models import cut_models

LAYER = Path(sdk.__file__).resolve().parents[1]
POWERTOOLS = Path(aws_lambda_powertools.__file__).resolve().parent
# The Powertools utilities the product hands these clients to.
POWERTOOLS_CALLERS = (
    POWERTOOLS / "utilities" / "idempotency" / "persistence" / "dynamodb.py",
    POWERTOOLS / "utilities" / "parameters" / "secrets.py",
)


def test_the_files_are_what_the_installed_botocore_generates() -> None:
    """Fails after a botocore upgrade until ``python -m dev.tools.trim_models`` is run."""
    expected = cut_models()
    on_disk = {p.relative_to(MODELS_DIR): p.read_text() for p in MODELS_DIR.rglob("*.json")}
    assert on_disk == expected


def test_the_layer_pins_the_botocore_the_models_were_cut_from() -> None:
    """``sam build`` installs the layer from its requirements: an unpinned botocore would float to
    the newest 1.44.x while the models (and these tests) come from the pinned one."""
    import botocore  # noqa: PLC0415

    requirements = (LAYER.parent / "requirements.txt").read_text()
    pin = rf"^botocore=={re.escape(botocore.__version__)}$"
    assert re.search(pin, requirements, re.MULTILINE), requirements


@pytest.mark.parametrize("service", sorted(OPERATIONS))
def test_the_product_clients_load_the_cut_models(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sdk.product_session.cache_clear()
    make = {
        "dynamodb": sdk.dynamodb_client,
        "sns": sdk.sns_client,
        "secretsmanager": sdk.secretsmanager_client,
    }
    try:
        client = make[service]()
    finally:
        sdk.product_session.cache_clear()
    assert client.meta.service_model.operation_names == sorted(OPERATIONS[service])


def test_other_sessions_keep_botocore_s_full_models(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3  # noqa: PLC0415

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sdk.product_session()
    assert "CreateTable" in boto3.session.Session().client("dynamodb").meta.service_model.operation_names


def test_every_operation_the_code_calls_is_kept() -> None:
    """Each operation of these services whose method name the layer or the Powertools utilities
    it uses call (``.put_item(``) must be in ``OPERATIONS``: a client has no method for any other."""
    sources = [p.read_text() for p in LAYER.rglob("*.py")] + [p.read_text() for p in POWERTOOLS_CALLERS]
    called = {name for text in sources for name in re.findall(r"\.([a-z_]+)\(", text)}
    loader = Loader()
    missing = {}
    for service in OPERATIONS:
        full = loader.load_service_model(service, "service-2")["operations"]
        used = {op for op in full if xform_name(op) in called}
        if used - set(OPERATIONS[service]):
            missing[service] = sorted(used - set(OPERATIONS[service]))
        assert set(OPERATIONS[service]) <= set(full)  # no typo in the list
    assert missing == {}
