"""The enricher's batch, one module per step.

``parse`` (1: SQS record -> item) -> ``prepare`` (2-4 per appointment: claim, ``fetch``,
check, build, ``track`` the change) -> ``publish`` (5: rounds; then ``announce`` promotes what went
out) -> ``settle`` (6: quarantine, claims, metrics); ``items`` holds an item's stages,
``idempotency`` the claims, ``service`` runs the steps and ``wiring`` builds it from the environment.

Sub-modules are imported by name (``from appointment_enricher.enrich.x import y``); this file imports
none of them, so importing one never loads the others (the receiver's cold start depends on it).
"""

__all__ = [
    "announce",
    "fetch",
    "handback",
    "idempotency",
    "items",
    "parse",
    "prepare",
    "publish",
    "related",
    "service",
    "settle",
    "tenancy",
    "track",
    "wiring",
]
