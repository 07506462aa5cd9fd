"""The reconciler: ``rules`` (pure: what the webhooks missed), ``run`` (the sweep),
``cursors`` (where a sweep stopped, in DynamoDB), ``lease`` (one run at a time) and ``wiring``
(its composition root).

Sub-modules are imported by name (``from appointment_enricher.reconcile.x import y``); this file imports
none of them, so importing one never loads the others (the receiver's cold start depends on it).
"""

__all__ = ["cursors", "lease", "rules", "run", "wiring"]
