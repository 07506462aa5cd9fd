"""PowerLeads (HighLevel) API: the HTTP ``client``, where ``tokens`` come from (env, Secrets
Manager, ``oauth`` refresh over a compare-and-swap ``secret_store``), the token source's ``wiring`` and
``detection`` (requests without a character-set detector, for cold starts).

Sub-modules are imported by name (``from appointment_enricher.powerleads.x import y``); this file imports
none of them, so importing one never loads the others (the receiver's cold start depends on it).
"""

__all__ = ["client", "detection", "oauth", "secret_store", "tokens", "wiring"]
