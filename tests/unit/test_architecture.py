"""Architecture rules of the repository's code, read from its source with ``ast`` (nothing is imported).

* No import cycle anywhere in the repository's code: the shipped package ``appointment_enricher``
  (every sub-package), ``dev/``, ``bench/`` and ``cli/plenrich`` (lazy imports inside functions
  count: they still tie the two modules together; ``if TYPE_CHECKING:`` imports do not).
* The domain modules (the package's top level: ``models``, ``enrichment``, ``related``,
  ``entities``, ``changes``,
  ``outbound``, ``wire``, ``errors``, ``clocks``) import neither boto3/botocore nor requests,
  directly or through the package's other modules.
* No class in the shipped code (``layers/shared``, ``functions``) is over ``MAX_CLASS_LINES``
  lines, and no product file carries a per-file complexity ignore in ``pyproject.toml``.
* One name per clock (``clocks``): no parameter, field or attribute is called ``clock`` or
  ``wall``; ``now``, ``monotonic`` and ``epoch`` say which clock it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import python_files

PACKAGE = "appointment_enricher"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "layers" / "shared" / PACKAGE
ROOT = PACKAGE_DIR.parents[2]
DOMAIN = {"models", "enrichment", "related", "entities", "changes", "outbound", "wire", "errors", "clocks"}
FORBIDDEN_IN_DOMAIN = {"boto3", "botocore", "requests"}
# The repository's own code trees (import name -> folder): a cycle between any two modules fails.
CODE_TREES = {
    PACKAGE: PACKAGE_DIR,
    "dev": ROOT / "dev",
    "bench": ROOT / "bench",
    "plenrich": ROOT / "cli" / "plenrich",
}

Graph = dict[str, set[str]]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``importer``."""
    if not level:
        return module
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(tree: ast.AST, importer: str = f"{PACKAGE}.x", is_package: bool = False) -> set[str]:
    """Absolute names imported anywhere in ``tree``; ``from pkg import name`` adds ``pkg.name`` too
    (it may name a module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, importer, is_package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _module_name(path: Path, tree_dir: Path, tree_name: str) -> str:
    parts = [tree_name, *path.relative_to(tree_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tree_imports(tree_dir: Path, tree_name: str) -> dict[str, set[str]]:
    """Dotted module name (``enrich.service``, without the tree's name) -> every absolute name it imports."""
    found: dict[str, set[str]] = {}
    for path in python_files(tree_dir):
        name = _module_name(path, tree_dir, tree_name)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found[name.removeprefix(tree_name).removeprefix(".") or "__init__"] = _imports(
            tree, name, path.stem == "__init__"
        )
    return found


def module_imports(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """The package's modules (dotted, package name dropped; ``__init__`` files left out)."""
    return {
        name: names
        for name, names in tree_imports(package_dir, PACKAGE).items()
        if name != "__init__" and not (package_dir / name.replace(".", "/") / "__init__.py").exists()
    }


def internal_graph(imports: dict[str, set[str]], prefix: str = f"{PACKAGE}.") -> Graph:
    """Module -> the modules of the same tree it imports (a name ``a.b.C`` counts as module ``a.b``)."""
    modules = set(imports)
    graph: Graph = {}
    for module, names in imports.items():
        targets: set[str] = set()
        for name in names:
            if not name.startswith(prefix):
                continue
            dotted = name.removeprefix(prefix)
            while dotted and dotted not in modules:
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != module:
                targets.add(dotted)
        graph[module] = targets
    return graph


def repo_graph() -> Graph:
    """Every module of every code tree, named absolutely, with its edges inside those trees."""
    graph: Graph = {}
    imports: dict[str, set[str]] = {}
    for tree_name, tree_dir in CODE_TREES.items():
        for name, names in tree_imports(tree_dir, tree_name).items():
            full = tree_name if name == "__init__" else f"{tree_name}.{name}"
            if (tree_dir / name.replace(".", "/") / "__init__.py").exists():
                continue  # a package's __init__ re-exports; its submodules carry the edges
            imports[full] = names
    modules = set(imports)
    for module, names in imports.items():
        targets: set[str] = set()
        for name in names:
            dotted = name
            while dotted and dotted not in modules:
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != module:
                targets.add(dotted)
        graph[module] = targets
    return graph


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


def test_the_package_is_found_with_its_sub_packages() -> None:
    imports = module_imports()
    assert {"models", "enrichment", "enrich.service", "intake.receiver", "ledger.base"} <= set(imports)
    assert set(imports) >= DOMAIN, f"domain modules named here but missing: {sorted(DOMAIN - set(imports))}"


def test_no_import_cycles_in_the_package() -> None:
    found = cycles(internal_graph(module_imports()))
    assert not found, f"import cycles in {PACKAGE}: {[sorted(c) for c in found]}"


def test_no_import_cycles_anywhere_in_the_repository() -> None:
    graph = repo_graph()
    assert {"dev.stack.run", "bench.run", "plenrich.main", f"{PACKAGE}.enrich.service"} <= set(graph)
    found = cycles(graph)
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


def test_every_sub_package_lists_its_modules_in_all() -> None:
    """``__all__`` in each ``__init__.py`` (the package's own included) names exactly its modules
    and sub-packages."""
    problems = {}
    for init in sorted(PACKAGE_DIR.rglob("__init__.py")):
        folder = init.parent
        children = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        children |= {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
        tree = ast.parse(init.read_text(encoding="utf-8"))
        declared: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
                declared = set(ast.literal_eval(node.value))
        if not declared or not (declared == children or declared <= _exported_names(tree)):
            problems[str(folder.relative_to(PACKAGE_DIR))] = sorted(children ^ declared)
    assert not problems, problems


def _exported_names(tree: ast.Module) -> set[str]:
    """Names an ``__init__`` re-exports (imported or lazily served)."""
    names = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
            names |= set(ast.literal_eval(node.value.args[0])) if isinstance(node.value, ast.Call) else set()
    return names


def test_domain_imports_no_aws_or_http_client() -> None:
    imports = module_imports()
    graph = internal_graph(imports)
    domain = DOMAIN
    assert domain <= set(imports)
    problems = []
    for module in sorted(domain):
        for dependency in sorted(reachable(graph, module)):
            bad = {name.split(".")[0] for name in imports[dependency]} & FORBIDDEN_IN_DOMAIN
            if bad:
                via = "" if dependency == module else f" (through {dependency})"
                problems.append(f"{module} imports {sorted(bad)}{via}")
    assert not problems, problems


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
    shipped = [*python_files(ROOT / "layers" / "shared"), *python_files(ROOT / "functions")]
    assert PACKAGE_DIR / "intake" / "receiver.py" in shipped
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
        str(path.relative_to(PACKAGE_DIR)): sorted(names)
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
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
        "from ..ledger.base import L\n"
        "def f():\n    import requests\n    from .tokens import Z\n"
    )
    names = _imports(ast.parse(source), f"{PACKAGE}.enrich.service")
    assert {f"{PACKAGE}.enrich.models", f"{PACKAGE}.enrich.formats", f"{PACKAGE}.enrich.tokens"} <= names
    assert {"requests", f"{PACKAGE}.ledger.base"} <= names
    assert f"{PACKAGE}.enrich.enricher" not in names
    # from a package's __init__, one dot is the package itself
    assert f"{PACKAGE}.enrich.x" in _imports(
        ast.parse("from .x import y\n"), f"{PACKAGE}.enrich", is_package=True
    )


def test_graph_resolves_names_to_modules_across_sub_packages() -> None:
    imports = {
        "enrich.service": {f"{PACKAGE}.ledger.base.Ledger", f"{PACKAGE}.wire"},
        "ledger.base": set(),
        "wire": set(),
    }
    assert internal_graph(imports) == {
        "enrich.service": {"ledger.base", "wire"},
        "ledger.base": set(),
        "wire": set(),
    }


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
    for path in sorted(
        [*root.glob("bench/**/*.py"), *root.glob("dev/**/*.py"), *root.glob("cli/plenrich/**/*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith((PACKAGE, "dev", "bench")):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    problems.append(f"{path.relative_to(root)}: from {node.module} import {private}")
    assert not problems, problems
