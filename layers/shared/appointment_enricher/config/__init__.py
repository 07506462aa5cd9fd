"""Every function's environment: the receiver's, the enricher's, the reconciler's.

Two modules, one import path: ``intake`` holds the receiver's settings (``ReceiverConfig``,
``Tenancy``) as a plain dataclass parsed by hand; ``pipeline`` holds the enricher's and the
reconciler's as pydantic models, reached through this package's ``__getattr__`` (PEP 562). So
``from appointment_enricher.config import ReceiverConfig`` never imports pydantic, while
``... import EnricherSettings`` loads ``pipeline`` and pydantic on first use.

Every function fails its cold start with the one ``errors.ConfigError``, whose message names the
variable and never its value. Defaults come from ``wire`` (URLs, versions, windows) and
``powerleads.client`` (timeouts, retries), never repeated here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .intake import ReceiverConfig, Tenancy

if TYPE_CHECKING:
    from .pipeline import EnricherSettings, LocationIds, ReconcilerSettings

__all__ = [
    "ConfigError",
    "EnricherSettings",
    "LocationIds",
    "ReceiverConfig",
    "ReconcilerSettings",
    "Tenancy",
]

_LAZY = frozenset({"EnricherSettings", "ReconcilerSettings", "LocationIds"})


def __getattr__(name: str) -> Any:
    """The pydantic settings, imported on first use (PEP 562): see the module docstring."""
    if name in _LAZY:
        from . import pipeline  # noqa: PLC0415 - lazily: the receiver never pays for pydantic

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
