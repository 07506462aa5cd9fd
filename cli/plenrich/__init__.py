"""``plenrich``: operate the PowerLeads appointment enricher against AWS or the local stack.

    plenrich inspect   [--quarantine-url URL] [--error-type T ...] [--max N] [--json]
    plenrich redrive   [--quarantine-url URL] [--ingest-queue-url URL] [--error-type T ...] [--max N]
                       [--dry-run]
    plenrich backfill  [--ingest-queue-url URL] [--file F | stdin] [--location LOC] [--rate 8] [--dry-run]
    plenrich show      APPOINTMENT_ID [--ledger-table NAME] [--json]
    plenrich reconcile [--location LOC ...] [--dry-run] [--max-seconds 600]

AWS access is plain boto3, so ``AWS_ENDPOINT_URL`` (the local stack), ``AWS_PROFILE`` and
``AWS_DEFAULT_REGION`` work as usual; queue URLs come from the flags or from the functions' variables
``INGEST_QUEUE_URL`` and ``QUARANTINE_QUEUE_URL`` (or its older name ``DEAD_LETTER_QUEUE_URL``;
``--dlq-url`` is kept as an alias of ``--quarantine-url``), and ``LEDGER_TABLE_NAME`` for ``show``.
Progress goes to stderr, results to stdout.
``--env-file FILE`` loads the environment ``make run`` writes. A failure is one line (the cause
and the fix; ``failures``). Exit codes: 0 ok, 1 failure (items failed, AWS/PowerLeads refused or
unreachable), 2 usage or configuration error.

The package ships the product's ``appointment_enricher`` (wire rules, SDK settings, the
reconciler) and imports nothing from the repository's dev tooling.
"""
