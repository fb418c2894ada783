"""The package's shape: no import cycles, layers import only downwards, no module shadowed by an export."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "carve"

# Each stage may import the stages listed for it (and itself); ``base`` modules import nothing of carve.
BASE = {"carve.config", "carve.files"}
ALLOWED = {
    "zoo": {"zoo"},
    "latency": {"zoo", "latency"},
    "train": {"zoo", "train"},
    "search": {"zoo", "latency", "train", "search"},
    "finetune": {"zoo", "latency", "train", "search", "finetune"},
    "compress": {"zoo", "latency", "train", "search", "compress"},
    "run": {"zoo", "latency", "train", "search", "finetune", "compress", "run"},
    "cli": {"zoo", "latency", "train", "search", "finetune", "compress", "run", "cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports_of(name: str) -> set[str]:
    """The carve modules ``name`` imports anywhere in its source (function-level imports included)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [(base, a.name) for a in node.names]
        else:
            continue
        for base, attr in targets:
            if attr is not None and f"{base}.{attr}" in MODULES:
                found.add(f"{base}.{attr}")
            elif base in MODULES:
                found.add(base)
    found.discard(name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_carve_modules() -> None:
    assert cycles(GRAPH) == []


def stage_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_import_only_downwards(name: str) -> None:
    if name in BASE:
        assert GRAPH[name] == set(), f"{name} is a base module and must import nothing of carve"
        return
    stage = stage_of(name)
    if stage is None:
        return
    wrong = sorted(t for t in GRAPH[name] if t not in BASE and stage_of(t) not in ALLOWED[stage])
    assert not wrong, f"{name} ({stage}) imports {wrong}; {stage} may use {sorted(ALLOWED[stage])}"


def public_names(name: str) -> set[str]:
    """Names a module binds at its top level (definitions, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(MODULES[name].read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.count(".") >= 1 and not is_package(n)))
def test_no_module_shares_a_name_with_what_it_defines(name: str) -> None:
    short = name.rpartition(".")[2]
    assert short not in public_names(name), f"{name} defines {short!r}: its package's attribute would shadow it"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not is_package(n) and not n.endswith("__main__")))
def test_package_attribute_of_a_module_name_is_the_module(name: str) -> None:
    package, _, short = name.rpartition(".")
    module = importlib.import_module(name)
    assert getattr(importlib.import_module(package), short) is module, f"{package}.{short} is not the module {name}"


def test_no_module_is_past_400_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in long.items() if k > 400} == {}
