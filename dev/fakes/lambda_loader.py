"""Load a function's ``app.py`` as a uniquely named module (dev only).

Both handlers live in a file called ``app.py``, so importing them by file path under
distinct module names is the only way to hold both in one process. Load them *after*
the environment is set: the handlers configure themselves at import (cold start).
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

Handler = Callable[[dict[str, Any], Any], Any]

_counter = itertools.count(1)


def add_code_paths(repo_root: Path = REPO_ROOT) -> None:
    """Put every ``layers/<dir>`` and the repo root on ``sys.path`` (as Lambda's /opt/python)."""
    paths = [str(repo_root)]
    layers = repo_root / "layers"
    if layers.is_dir():
        paths = [str(p) for p in sorted(layers.iterdir()) if p.is_dir()] + paths
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


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
    module_name = base if base not in sys.modules else f"{base}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before exec: dataclasses/pydantic look the module up
    collecting = gc.isenabled()
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        if collecting:  # a failed init leaves the handler's collector off; Lambda would discard it
            gc.enable()
        raise
    return module


def load_handler(
    name: str, *, attr: str = "lambda_handler", repo_root: Path = REPO_ROOT, fresh: bool = True
) -> Handler:
    """The handler callable of ``functions/<name>/app.py``."""
    module = load_function_module(name, repo_root=repo_root, fresh=fresh)
    handler: Handler = getattr(module, attr)
    return handler


def one_at_a_time(handler: Handler, lock: threading.Lock) -> Handler:
    """``handler``, invoked only while holding ``lock``.

    Every function's Powertools ``Logger()`` is the same logger here (one service name, one
    process), and ``inject_lambda_context`` stores ``function_name`` and the rest on it, not per
    thread: a webhook invocation on the gateway's thread would stamp ``WebhookFunction`` on the
    enricher's lines logged meanwhile on the poller's thread. In Lambda each function has its own
    process; sharing one lock gives the local stack the same one-invocation-at-a-time logs.
    """

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with lock:
            return handler(event, context)

    return invoke
