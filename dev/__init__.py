"""Dev-only tooling; never shipped in the layer.

Importing it puts ``layers/<dir>`` and the repo root on ``sys.path`` (as Lambda's /opt/python),
so the tooling (``python -m dev.…``) builds and reads webhooks and ingest messages
with the shipped wire rules (``appointment_enricher.wire``) rather than copies of them.
"""

from dev.fakes.lambda_loader import add_code_paths

add_code_paths()
