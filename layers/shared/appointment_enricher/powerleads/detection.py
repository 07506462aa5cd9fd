"""``requests`` without a character-set detector: a cold-start choice of the functions that call
PowerLeads (the enricher and the reconciler), made in their ``app.py`` before anything imports it.

``requests`` imports ``charset_normalizer`` (or ``chardet``) when it is imported, about 7 ms of
every cold start (BENCHMARKS.md), only to guess the encoding of a body that declares none
(``Response.text``, ``apparent_encoding``). These functions read JSON, which ``Response.json``
decodes without a detector (RFC 8259 UTF-8, ``requests.utils.guess_json_utf``). Since 2.32
``requests`` supports running without one and falls back to UTF-8; an entry of ``None`` in
``sys.modules`` is Python's documented way to make an import fail.
"""

from __future__ import annotations

import sys
import warnings
from typing import Final

__all__ = ["DETECTORS", "skip_charset_detection"]

DETECTORS: Final = ("charset_normalizer", "chardet")


def skip_charset_detection() -> bool:
    """Keep the detectors out of this process; False when ``requests`` (and so a detector) is
    already loaded, or a detector was imported by something else: nothing is left to save then."""
    if "requests" in sys.modules or any(sys.modules.get(name) is not None for name in DETECTORS):
        return False
    for name in DETECTORS:
        sys.modules[name] = None  # type: ignore[assignment]
    # requests says once, at import, that it found no detector: expected here, not news.
    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")
    return True
