"""Write the enriched record's JSON Schema to ``schemas/`` (``python -m dev.tools.export_schema``).

A unit test fails when the committed file differs from what the model produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schemas" / "enriched-record-v1.json"


def render() -> str:
    sys.path.insert(0, str(ROOT / "layers" / "shared"))
    from appointment_enricher.models import enriched_record_json_schema  # noqa: PLC0415

    schema: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    schema.update(enriched_record_json_schema())
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(render())
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
