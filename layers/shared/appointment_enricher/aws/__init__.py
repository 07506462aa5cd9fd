"""AWS adapters: SDK settings every handler shares (``sdk``), the cut service models its clients
load (``service_models``), the SQS queues (``queues``) and the SNS/SQS ``publisher``.

Sub-modules are imported by name (``from appointment_enricher.aws.x import y``); this file imports
none of them, so importing one never loads the others (the receiver's cold start depends on it).
"""

__all__ = ["publisher", "queues", "sdk", "service_models"]
