"""The repository explains itself: no document outside it is cited, and every relative link in
its Markdown resolves to a file that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared/")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    suffixes = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json", ".cfg"}
    return [ROOT / n for n in names if Path(n).suffix in suffixes or Path(n).name == "Makefile"]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = [
        str(path.relative_to(ROOT))
        for path in tracked_text_files()
        if path.resolve() != this and path.exists() and OUTSIDE.search(path.read_text(errors="replace"))
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("name", ["README.md", "SECURITY.md", "BENCHMARKS.md", "docs/ARCHITECTURE.md"])
def test_relative_links_resolve(name: str) -> None:
    document = ROOT / name
    broken = [
        target
        for target in MARKDOWN_LINK.findall(document.read_text())
        if "://" not in target and not (document.parent / target).exists()
    ]
    assert not broken, broken


def test_the_readme_links_the_architecture() -> None:
    assert "](docs/ARCHITECTURE.md" in (ROOT / "README.md").read_text()
