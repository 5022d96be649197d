"""The code's shape, measured: module, class and function sizes, no import cycle between jaxnets modules
(function-level imports included), and no module using another module's ``_``-prefixed names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxnets"
SMALL = ("engine", "population")  # the engine's modules and population.py: at most 600 lines each


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_sizes(name):
    path = MODULES[name]
    lines = path.read_text().count("\n")
    small = any(part in SMALL for part in name.split(".")[1:2]) or name == "jaxnets.population"
    assert lines <= (600 if small else 1100), f"{name}: {lines} lines"
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno - node.lineno < 80, f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno < 250, f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"


def _imports(name: str, tree: ast.Module) -> dict[str, str]:
    """``{local name: jaxnets module}`` for every import of a jaxnets module anywhere in ``tree``, and the
    modules imported (as keys prefixed with ``@``, for the import graph)."""
    out: dict[str, str] = {}
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "jaxnets":
                    out[a.asname or a.name.split(".")[0]] = a.name
                    out["@" + a.name] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "jaxnets":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                target = full if full in MODULES else base
                out[a.asname or a.name] = target if full in MODULES else f"{base}:{a.name}"
                out["@" + target] = target
    return out


def test_no_import_cycle():
    graph = {name: {v for k, v in _imports(name, _tree(path)).items() if k.startswith("@") and v in MODULES}
             for name, path in MODULES.items()}
    # a package's own submodules are part of it: an edge from a submodule to its package is not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".") and t != name}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("folder", ["jaxnets", "benchmarks", "examples"])
def test_no_module_uses_another_modules_private_names(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        name = _module_name(path)
        tree = _tree(path)
        if name not in MODULES:
            MODULES[name] = path  # so relative imports resolve
        imported = _imports(name, tree)
        for local, target in imported.items():
            if local.startswith("@"):
                continue
            if ":" in target and target.split(":")[1].startswith("_") and not target.split(":")[1].startswith("__"):
                bad.append(f"{path.relative_to(ROOT)}: imports {target}")
        aliases = {k: v for k, v in imported.items() if not k.startswith("@") and ":" not in v}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases[node.value.id] != name):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)
