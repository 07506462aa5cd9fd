"""The local stack `make run` starts.

Embedded AWS (moto server) built from template.yaml, the gateway, the SQS poller.
"""

__all__ = ["awslocal", "cfn", "gateway", "poller", "reconcile_local", "run", "sqs"]
