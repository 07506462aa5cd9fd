"""Every handler pins the SDK loggers at cold start, the future ones (a reconciler) included.

With ``LogLevel=DEBUG`` the Lambda runtime puts the root logger at DEBUG and botocore would log
secret values; ``tests/integration/test_secret_scan.py`` proves the pinning works for the
handlers that exist, this check makes a new ``functions/<name>/app.py`` that forgets it fail.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from appointment_enricher.aws.sdk import SDK_LOGGERS, quiet_sdk_loggers

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))


@pytest.mark.parametrize("app", HANDLERS, ids=[p.parent.name for p in HANDLERS])
def test_the_handler_calls_quiet_sdk_loggers_at_module_level(app: Path) -> None:
    tree = ast.parse(app.read_text(encoding="utf-8"))
    calls = [
        node
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "quiet_sdk_loggers"
    ]
    assert calls, f"{app.relative_to(ROOT)} must call quiet_sdk_loggers() at cold start"


def test_quiet_sdk_loggers_pins_at_info_and_keeps_stricter_levels() -> None:
    saved = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    try:
        for name in SDK_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        quiet_sdk_loggers()
        assert logging.getLogger("botocore.parsers").getEffectiveLevel() == logging.INFO
        assert logging.getLogger("urllib3").level == logging.ERROR
        assert all(logging.getLogger(name).getEffectiveLevel() >= logging.INFO for name in SDK_LOGGERS)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
