"""Webhook intake: the receiver's rules and signature verification.

Imports no pydantic and no requests: the receiver's cold start stays near ``import boto3``.

Sub-modules are imported by name (``from appointment_enricher.intake.x import y``); this file imports
none of them, so importing one never loads the others (the receiver's cold start depends on it).
"""

__all__ = ["receiver", "signatures"]
