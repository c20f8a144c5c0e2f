"""The package's import graph: no cycle, and every import goes to the same or a lower layer.

Layers, lowest first. ``config`` is a leaf of settings every layer may read; the other
top-level modules sit above the server. Imports inside functions count. Imports under
``if TYPE_CHECKING:`` are annotations only: they must obey the layers too, but they never
run, so they are not edges of the cycle check (a Protocol and the handlers typed with it
name each other, as mypy allows).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "proxy"
LAYERS = ["config", "protocol", "replication", "commands", "server",
          "metrics", "run", "workers", "status", "logs", "cli"]
ROOT_MODULES = {"__init__"}  # the version string, below everything


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def imports_of(path: Path, *, annotations: bool = True) -> set[str]:
    """Every project module ``path`` imports, at module level or inside functions (and,
    with ``annotations``, under ``if TYPE_CHECKING:``)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if name == "__init__":
        package = []
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = set() if annotations else type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] in ("redquorum", "proxy"):
                    raise AssertionError(f"{name}: absolute import of {node.module}")
                continue
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if node.module:
                found.add(".".join(target) or "__init__")
            for alias in node.names:  # `from . import clock` imports a module
                candidate = ".".join(target + [alias.name])
                if (PACKAGE / Path(*target, alias.name + ".py")).exists() or \
                        (PACKAGE / Path(*target, alias.name, "__init__.py")).exists():
                    found.add(candidate)
                elif not node.module:
                    found.add(".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in ("redquorum", "proxy"), alias.name
    found.discard(name)
    return found


def graph(*, annotations: bool = True) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p, annotations=annotations) for p in PACKAGE.rglob("*.py")
            if "__pycache__" not in p.parts}


def layer(module: str) -> int:
    if module == "__init__":
        return -1
    if module == "replicas" or module.startswith("replicas."):
        return -1
    return LAYERS.index(module.split(".")[0])


def test_every_module_belongs_to_a_layer() -> None:
    for module in graph():
        layer(module)


def test_imports_only_go_down_or_sideways() -> None:
    wrong = [f"{m} → {t}" for m, targets in graph().items() for t in targets
             if layer(t) > layer(m)]
    assert not wrong, wrong


def test_no_cycles() -> None:
    edges = graph(annotations=False)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if state.get(target) is None:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_protocol_and_replication_do_no_io() -> None:
    for path in list((PACKAGE / "protocol").glob("*.py")) + list((PACKAGE / "replication").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [])
            for n in names:
                assert n.split(".")[0] not in ("trio", "socket", "select", "selectors"), (path, n)
