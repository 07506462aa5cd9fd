"""The ledger: each appointment as last published (port in ``base``, DynamoDB adapter in
``dynamodb``, the item's compression in ``compression``).

Sub-modules are imported by name (``from appointment_enricher.ledger.x import y``); this file imports
none of them, so importing one never loads the others (the receiver's cold start depends on it).
"""

__all__ = ["base", "compression", "dynamodb"]
