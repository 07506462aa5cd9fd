"""The operations CLI is its own package (cli/): it builds into a wheel that carries plenrich/ and
the product's appointment_enricher/, never dev/, and none of its modules imports dev tooling."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli"
PRODUCT = ROOT / "layers" / "shared" / "appointment_enricher"


def plenrich_modules() -> list[Path]:
    modules = sorted((CLI / "plenrich").rglob("*.py"))
    assert len(modules) >= 5
    return modules


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_plenrich_module_imports_dev_tooling() -> None:
    for path in plenrich_modules():
        found = imported_names(path)
        dev = sorted(n for n in found if n in ("dev", "bench", "tests") or n.startswith(("dev.", "bench.")))
        assert not dev, f"{path.relative_to(ROOT)} imports {dev}"


def test_plenrich_imports_in_a_clean_interpreter_without_dev() -> None:
    """Every plenrich module, imported with only cli/ and layers/shared on the path (no repo root):
    nothing reaches for dev, even lazily at import."""
    names = [f"plenrich.{p.stem}" for p in plenrich_modules() if p.stem not in ("__init__", "__main__")]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "from plenrich.main import build_parser\n"
        "build_parser()\n"
        "assert not [m for m in sys.modules if m == 'dev' or m.startswith('dev.')], sorted(sys.modules)\n"
    )
    paths = [str(CLI), str(PRODUCT.parent)]
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {paths!r}\n" + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_cli_wheel_ships_plenrich_and_the_product_and_no_dev(tmp_path: Path) -> None:
    """Built offline from a copy laid out as in the repository (cli/ beside layers/shared), so the
    build leaves nothing in the work tree."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(CLI, source / "cli", ignore=ignore)
    shutil.copytree(PRODUCT, source / "layers" / "shared" / "appointment_enricher", ignore=ignore)
    out = tmp_path / "wheels"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, str(source / "cli"), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("plenrich-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert "plenrich" in tops and "appointment_enricher" in tops
    assert not [t for t in tops if t in ("dev", "bench", "tests", "functions")], tops
    assert "plenrich/main.py" in names and "appointment_enricher/wire.py" in names
    assert "appointment_enricher/reconcile/wiring.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "plenrich = plenrich.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
