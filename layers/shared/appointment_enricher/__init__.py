"""PowerLeads appointment enricher: the package every function (and ``plenrich``) runs.

The domain sits at the top and imports neither boto3 nor requests:

- ``models``: pydantic shapes of the webhook, Get Appointment and the enriched record.
- ``enrichment``: pure rules, webhook + fetched appointment -> enriched record.
- ``related``: which id names each related entity; the contact allow-list; local times.
- ``entities``: shapes of the contact, calendar, user and location (``ENRICH_RELATED`` builds
  only import them).
- ``changes``: pure diff rules of a record's ``change``.
- ``outbound``: a record as it goes out (body, attributes, FIFO ids, size).
- ``wire``: what crosses a boundary and how (strict JSON, ids, dedupe ids, the ingest message).
- ``errors``: one base (``error_type``, ``retryable``) under every error; ``clocks``: the three clocks.

One sub-package per concern around it, each a port and its adapters:

- ``config``: every function's environment (the receiver's without pydantic).
- ``intake``: the receiver and signature verification (WebhookFunction).
- ``enrich``: the batch, one module per step (EnricherFunction).
- ``ledger``: each appointment as last published (port, DynamoDB adapter).
- ``reconcile``: rules, run, cursors (ReconcilerFunction, ``plenrich reconcile``).
- ``powerleads``: the HTTP client, tokens, OAuth, the token secret.
- ``budget``: the upstream rate budget every container and the reconciler share (GCRA arithmetic,
  in-process and DynamoDB buckets, the per-container spender).
- ``aws``: SDK settings, SQS queues, the SNS/SQS publisher.
"""

__all__ = [
    "aws",
    "budget",
    "changes",
    "clocks",
    "config",
    "enrich",
    "enrichment",
    "entities",
    "errors",
    "intake",
    "ledger",
    "models",
    "outbound",
    "powerleads",
    "reconcile",
    "related",
    "wire",
]
