"""Write the product's cut service models (``appointment_enricher/aws/models``) from the installed
botocore: each service's ``OPERATIONS``, every shape they reach (errors included), no
documentation. ``--check`` exits 1 when the files differ from what it would write.

Usage: ``python -m dev.tools.trim_models [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from botocore.loaders import Loader

from appointment_enricher.aws.service_models import MODELS_DIR, OPERATIONS


def _reached(shapes: dict[str, Any], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = shapes[name]
        stack += [shape[key]["shape"] for key in ("member", "key", "value") if key in shape]
        stack += [member["shape"] for member in shape.get("members", {}).values()]
    return seen


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        # documentation is a string; a member that happens to be called so is a dict, and stays
        return {
            k: _undocumented(v) for k, v in value.items() if not (k == "documentation" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def cut_models() -> dict[Path, str]:
    """Relative path -> file text, for every service in ``OPERATIONS``."""
    loader = Loader()  # botocore's own data only: no extra paths, not these models
    files: dict[Path, str] = {}
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_service_model(service, "service-2", version)
        kept = {name: model["operations"][name] for name in operations}
        roots = [op[k]["shape"] for op in kept.values() for k in ("input", "output") if k in op]
        roots += [error["shape"] for op in kept.values() for error in op.get("errors", [])]
        reached = _reached(model["shapes"], roots)
        cut = {
            **model,
            "operations": kept,
            "shapes": {name: shape for name, shape in model["shapes"].items() if name in reached},
        }
        text = json.dumps(_undocumented(cut), sort_keys=True, separators=(",", ":")) + "\n"
        files[Path(service) / version / "service-2.json"] = text
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are not current")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in cut_models().items():
        path = MODELS_DIR / relative
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(str(relative))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(
            f"stale service models: {', '.join(stale)} (run python -m dev.tools.trim_models)", file=sys.stderr
        )
        return 1
    print(("current: " if args.check else "written: ") + (", ".join(stale) or "nothing to change"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
