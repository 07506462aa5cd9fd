"""PowerLeads appointment enricher: the package shared by both Lambda functions.

Modules, one concept each:
- ``models``: pydantic models of the webhook, the Get Appointment response and the enriched record.
- ``enrichment``: pure rules that turn a webhook (+ fetched appointment) into an enriched record.
- ``signatures``: webhook signature verification (Ed25519 first, RSA-SHA256 fallback).
- ``receiver``: the webhook intake logic (verify, validate, enqueue).
- ``enricher``: the batch logic (idempotency, coalesced fetches, publish, quarantine).
- ``powerleads``: the HTTP adapter for the PowerLeads API.
- ``tokens``: where PowerLeads tokens come from (env, Secrets Manager).
- ``queues`` / ``publisher``: the SQS and SNS adapters.
- ``config``: environment variables as pydantic models.

Domain modules (``models``, ``enrichment``) import neither boto3 nor requests.
"""
