"""The service models in ``models/`` that the product's DynamoDB, SNS and Secrets Manager clients
load: botocore's own, cut to the operations the code calls (``OPERATIONS``), without documentation.

Making a client loads its whole service model (DynamoDB's is 600 KB of JSON, mostly the
documentation of operations never called here) and builds a method per operation. The three
clients took 46 ms with botocore's models and 15 ms with these in a fresh interpreter (after the
SQS client the floor makes too); in the enricher's cold start, with the collector off during init,
the difference is about 8 ms (1.90-1.92x -> 1.84-1.87x the floor, side by side; measured
2026-12-07). botocore reads models from extra data paths before its own (the ``data_path``
setting, ``AWS_DATA_PATH``); ``aws.sdk.product_session`` gives its one session this directory,
so only the product's clients use it, and every other session keeps botocore's full models.

The files are generated from the installed botocore (``python -m dev.tools.trim_models``), never
edited; ``tests/unit/test_aws_models.py`` fails when they differ from what the pinned botocore
generates, or when the code calls an operation of these services missing here. An operation the
code starts calling must be added to ``OPERATIONS`` and the models regenerated: a client made
from them has no method for any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

MODELS_DIR: Final = Path(__file__).resolve().parent / "models"

OPERATIONS: Final[dict[str, tuple[str, ...]]] = {
    # the ledger, the receipts, the fleet budget, the reconciler's lease and Powertools idempotency
    "dynamodb": (
        "BatchGetItem",
        "BatchWriteItem",
        "DeleteItem",
        "DescribeEndpoints",  # botocore looks for the discovery operation when it makes the client
        "GetItem",
        "PutItem",
        "UpdateItem",
    ),
    "sns": ("Publish", "PublishBatch"),
    # the token sources: read (Powertools parameters), an OAuth rotation's write and promotion;
    # the two others are calls Powertools' SecretsProvider can make (get_multiple, set)
    "secretsmanager": (
        "BatchGetSecretValue",
        "CreateSecret",
        "GetSecretValue",
        "PutSecretValue",
        "UpdateSecretVersionStage",
    ),
}

__all__ = ["MODELS_DIR", "OPERATIONS"]
