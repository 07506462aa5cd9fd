"""Load a function's ``app.py`` as a uniquely named module (dev only).

Both handlers live in a file called ``app.py``, so importing them by file path under
distinct module names is the only way to hold both in one process. Load them *after*
the environment is set: the handlers configure themselves at import (cold start).

In Lambda each function has a process of its own. Here they share one, and with it one
Powertools logger (the service name is the same) whose Lambda context keys
(``function_name``, ``function_arn``, ``function_request_id``, ...) are whatever the last
invocation of *any* function put there: a receiver loaded after an enricher invocation would log
"webhook receiver ready" as ``EnricherFunction``, and an enricher line logged while a webhook is
being answered on another thread would carry ``WebhookFunction``. So every line a loaded
function's ``app.py`` logs gets that function's own keys (``FunctionNames``): its last
invocation's context, or at cold start its logical id from the template alone.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import itertools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

REPO_ROOT = Path(__file__).resolve().parents[2]

Handler = Callable[[dict[str, Any], Any], Any]

_counter = itertools.count(1)

# The keys Powertools' ``inject_lambda_context`` puts on every line (xray_trace_id aside).
CONTEXT_KEYS = ("cold_start", "function_name", "function_memory_size", "function_arn", "function_request_id")


def function_id(name: str) -> str:
    """``functions/enricher`` is ``EnricherFunction`` in template.yaml (tests/unit/test_template.py)."""
    return "".join(part.title() for part in name.replace("_", "-").split("-")) + "Function"


class FunctionNames:
    """A ``logging`` filter: puts the writing function's own Lambda context keys on each record
    from its ``app.py``.

    A record's extra attributes win over the logger's keys in Powertools' formatter, so this
    overrides whatever another function's invocation left on the shared logger. ``None`` drops a
    key, as on a Lambda cold start line, which has none of them. (Not a ``logging.Filter``
    subclass: importing ``logging`` here would take it out of the cold starts bench/ measures.)
    """

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, Any]] = {}  # app.py path -> the keys its lines carry
        self._lock = threading.Lock()

    def loading(self, path: str, function: str) -> None:
        """Cold start: only the function's name (a Lambda cold start line carries no keys at all)."""
        with self._lock:
            self._keys[path] = {**dict.fromkeys(CONTEXT_KEYS), "function_name": function}

    def invoked(self, path: str, context: Any, *, cold: bool) -> None:
        """What ``inject_lambda_context`` puts on the logger for this invocation."""
        keys = {
            "cold_start": cold,
            "function_name": getattr(context, "function_name", None),
            "function_memory_size": getattr(context, "memory_limit_in_mb", None),
            "function_arn": getattr(context, "invoked_function_arn", None),
            "function_request_id": getattr(context, "aws_request_id", None),
        }
        with self._lock:
            self._keys[path] = keys

    def filter(self, record: logging.LogRecord) -> bool:
        keys = self._keys.get(record.pathname)
        if keys is not None:
            record.__dict__.update(keys)
        return True

    def watch(self, logger_name: str) -> None:
        import logging  # noqa: PLC0415 - see the class

        logger = logging.getLogger(logger_name)
        if self not in logger.filters:
            logger.addFilter(self)


FUNCTION_NAMES = FunctionNames()


def _service_logger_name() -> str:
    """The logger every function's ``Logger()`` shares: Powertools names it after the service."""
    return os.getenv("POWERTOOLS_SERVICE_NAME", "service_undefined")


def _named(handler: Handler, path: str) -> Handler:
    """``handler``, telling ``FUNCTION_NAMES`` about each invocation's context first."""
    invocations = itertools.count()

    @functools.wraps(handler)
    def invoke(event: dict[str, Any], context: Any) -> Any:
        FUNCTION_NAMES.invoked(path, context, cold=next(invocations) == 0)
        return handler(event, context)

    return invoke


def add_code_paths(repo_root: Path = REPO_ROOT) -> None:
    """Put every ``layers/<dir>`` and the repo root on ``sys.path`` (as Lambda's /opt/python)."""
    paths = [str(repo_root)]
    layers = repo_root / "layers"
    if layers.is_dir():
        paths = [str(p) for p in sorted(layers.iterdir()) if p.is_dir()] + paths
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def _new_container() -> None:
    """A cold start on Lambda is a new process: what the layer keeps per container starts over
    (its boto3 session, which has resolved the credentials of the environment it was made in)."""
    sdk = sys.modules.get("appointment_enricher.aws.sdk")
    if sdk is not None:
        sdk.product_session.cache_clear()


def load_function_module(name: str, *, repo_root: Path = REPO_ROOT, fresh: bool = True) -> ModuleType:
    """Import ``functions/<name>/app.py`` as ``_lambda_<name>_app[_<n>]``.

    ``fresh=True`` (default) executes the file again under a new module name, i.e. a new
    cold start that re-reads the environment. ``fresh=False`` reuses an earlier load.
    """
    add_code_paths(repo_root)
    path = repo_root / "functions" / name / "app.py"
    if not path.is_file():
        raise FileNotFoundError(f"no handler at {path}")
    base = f"_lambda_{name.replace('-', '_')}_app"
    if not fresh and base in sys.modules:
        return sys.modules[base]
    _new_container()
    module_name = base if base not in sys.modules else f"{base}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before exec: dataclasses/pydantic look the module up
    FUNCTION_NAMES.loading(str(path), function_id(name))
    FUNCTION_NAMES.watch(_service_logger_name())
    collecting = gc.isenabled()
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        if collecting:  # a failed init leaves the handler's collector off; Lambda would discard it
            gc.enable()
        raise
    handler = getattr(module, "lambda_handler", None)
    if callable(handler):
        setattr(module, "lambda_handler", _named(handler, str(path)))  # noqa: B010 - a module, typed as such
    return module


def load_handler(
    name: str, *, attr: str = "lambda_handler", repo_root: Path = REPO_ROOT, fresh: bool = True
) -> Handler:
    """The handler callable of ``functions/<name>/app.py``."""
    module = load_function_module(name, repo_root=repo_root, fresh=fresh)
    handler: Handler = getattr(module, attr)
    return handler
