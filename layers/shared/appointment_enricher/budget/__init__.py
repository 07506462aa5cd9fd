"""One upstream budget per location for the whole fleet (port in ``base``, adapters ``memory``
and ``dynamodb``, the client-side lease pool in ``spend``, a container's own share in ``share``).

Sub-modules are imported by name; this file imports none of them.
"""

__all__ = ["base", "dynamodb", "memory", "share", "spend", "wiring"]
