"""Architecture rules of the shipped package, read from its source with ``ast`` (nothing is imported).

* No import cycle between the modules of ``appointment_enricher`` (lazy imports inside functions
  count: they still tie the two modules together; ``if TYPE_CHECKING:`` imports do not).
* The domain modules (``models``, ``enrichment`` and any ``wire``, ``formats`` or ``changes``)
  import neither boto3/botocore nor requests, directly or through the package's other modules.
* No class in the shipped code (``layers/shared``, ``functions``) is over ``MAX_CLASS_LINES``
  lines, and no product file carries a per-file complexity ignore in ``pyproject.toml``.
* One name per clock (``clocks``): no parameter, field or attribute is called ``clock`` or
  ``wall``; ``now``, ``monotonic`` and ``epoch`` say which clock it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "appointment_enricher"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "layers" / "shared" / PACKAGE
DOMAIN = {"models", "enrichment", "wire", "formats", "changes"}
FORBIDDEN_IN_DOMAIN = {"boto3", "botocore", "requests"}

Graph = dict[str, set[str]]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> set[str]:
    """Absolute names imported anywhere in ``tree`` (relative ones as ``appointment_enricher.x``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = f"{PACKAGE}.{node.module or ''}".rstrip(".") if node.level else node.module or ""
            found.add(base)
            if base == PACKAGE:  # ``from . import x`` names modules
                found.update(f"{PACKAGE}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def module_imports(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module name (without the package) -> every absolute name it imports."""
    return {
        path.stem: _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in sorted(package_dir.glob("*.py"))
        if path.stem != "__init__"
    }


def internal_graph(imports: dict[str, set[str]]) -> Graph:
    prefix = f"{PACKAGE}."
    return {
        module: {name.removeprefix(prefix).split(".")[0] for name in names if name.startswith(prefix)}
        & set(imports)
        for module, names in imports.items()
    }


def cycles(graph: Graph) -> list[set[str]]:
    """Strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def reachable(graph: Graph, start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_package_is_found() -> None:
    imports = module_imports()
    assert {"models", "enrichment", "enricher", "receiver"} <= set(imports)


def test_no_import_cycles() -> None:
    found = cycles(internal_graph(module_imports()))
    assert not found, f"import cycles in {PACKAGE}: {[sorted(c) for c in found]}"


def test_domain_imports_no_aws_or_http_client() -> None:
    imports = module_imports()
    graph = internal_graph(imports)
    domain = DOMAIN & set(imports)
    assert {"models", "enrichment"} <= domain
    problems = []
    for module in sorted(domain):
        for dependency in sorted(reachable(graph, module)):
            bad = {name.split(".")[0] for name in imports[dependency]} & FORBIDDEN_IN_DOMAIN
            if bad:
                via = "" if dependency == module else f" (through {dependency})"
                problems.append(f"{module} imports {sorted(bad)}{via}")
    assert not problems, problems


ROOT = PACKAGE_DIR.parents[2]
MAX_CLASS_LINES = 200
COMPLEXITY_RULES = {"C901", "PLR0912", "PLR0915"}


def class_sizes(tree: ast.AST) -> dict[str, int]:
    """Class name -> its lines, decorators excluded (``end_lineno - lineno + 1``)."""
    return {
        node.name: (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }


def test_no_class_over_the_size_limit() -> None:
    shipped = sorted([*(ROOT / "layers" / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")])
    assert PACKAGE_DIR / "receiver.py" in shipped
    problems = [
        f"{path.relative_to(ROOT)}: {name} has {size} lines"
        for path in shipped
        for name, size in class_sizes(ast.parse(path.read_text(encoding="utf-8"))).items()
        if size > MAX_CLASS_LINES
    ]
    assert not problems, f"split them (at most {MAX_CLASS_LINES} lines): {problems}"


def test_no_product_file_is_exempt_from_the_complexity_gate() -> None:
    import tomllib  # noqa: PLC0415 - only this test reads pyproject.toml

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ignores = config["tool"]["ruff"]["lint"].get("per-file-ignores", {})
    exempt = {
        pattern: sorted(set(rules) & COMPLEXITY_RULES)
        for pattern, rules in ignores.items()
        if pattern.startswith(("layers/", "functions/")) and set(rules) & COMPLEXITY_RULES
    }
    assert not exempt, f"split the code instead: {exempt}"


AMBIGUOUS_CLOCK_NAMES = {"clock", "wall"}


def clock_names(tree: ast.AST) -> set[str]:
    """Parameters, class fields and ``self.`` attributes named like an ambiguous clock."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            found.add(node.attr)
    return found & AMBIGUOUS_CLOCK_NAMES


def test_one_name_per_clock() -> None:
    problems = {
        path.stem: sorted(names)
        for path in sorted(PACKAGE_DIR.glob("*.py"))
        if (names := clock_names(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert not problems, f"say which clock (now, monotonic, epoch): {problems}"


# ---- the checks themselves catch what they guard -------------------------------------------


def test_cycle_finder_sees_a_cycle_and_a_self_import() -> None:
    assert [sorted(c) for c in cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})] == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [{"a"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_parser_reads_lazy_relative_and_skips_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .models import X\n"
        "from . import formats\n"
        "if TYPE_CHECKING:\n    from .enricher import Y\n"
        "def f():\n    import requests\n    from .tokens import Z\n"
    )
    names = _imports(ast.parse(source))
    assert {f"{PACKAGE}.models", f"{PACKAGE}.formats", f"{PACKAGE}.tokens", "requests"} <= names
    assert f"{PACKAGE}.enricher" not in names


def test_domain_rule_catches_a_transitive_http_import(tmp_path: Path) -> None:
    (tmp_path / "models.py").write_text("from .formats import x\n")
    (tmp_path / "formats.py").write_text("def f():\n    import requests\n")
    imports = module_imports(tmp_path)
    graph = internal_graph(imports)
    assert "formats" in reachable(graph, "models")
    assert "requests" in imports["formats"]


def test_class_size_counts_a_class_from_its_line_to_its_end() -> None:
    source = "class A:\n    x = 1\n\n    def f(self):\n        return 2\nclass B:\n    pass\n"
    assert class_sizes(ast.parse(source)) == {"A": 5, "B": 2}


def test_clock_name_check_sees_parameters_fields_and_attributes() -> None:
    source = "class A:\n    wall: int\n    def f(self, clock):\n        self.clock = clock\n"
    assert clock_names(ast.parse(source)) == {"clock", "wall"}
    assert clock_names(ast.parse("def f(now, monotonic, epoch):\n    pass\n")) == set()


def test_tools_import_no_private_names_from_the_product_or_dev() -> None:
    """bench/, dev/ and the CLI (cli/plenrich) use the product's and each other's public API only."""
    root = ROOT
    problems = []
    for path in sorted([*root.glob("bench/*.py"), *root.glob("dev/*.py"), *root.glob("cli/plenrich/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith((PACKAGE, "dev", "bench")):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    problems.append(f"{path.relative_to(root)}: from {node.module} import {private}")
    assert not problems, problems
