"""The shape of the code (issue 17): imports point one way, and one adapter touches Optuna's private attributes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "unetnas"
PRIVATE_OPTUNA = ("_storage", "_trial_id", "_study_id", "_CachedStorage", "_backend")
ADAPTER = PKG / "search" / "trials.py"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the unetnas modules it imports, at any depth of its code (lazy imports inside functions count)."""
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import unetnas.a.b` names module unetnas.a.b (or a package above)
                    t = t.rpartition(".")[0]
                if t and t != name and t != "unetnas":
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_unetnas() -> None:
    graph = import_graph()
    assert "unetnas.search.session" in graph["unetnas.search.replay"]  # the walker sees lazy imports too
    assert cycles(graph) == []


def test_no_private_optuna_attribute_outside_the_adapter() -> None:
    # named private attributes reached on Optuna objects, and any private module or attribute on an optuna.* path
    pattern = re.compile(r"\.(" + "|".join(PRIVATE_OPTUNA) + r")\b|\b_CachedStorage\b|\boptuna(\.\w+)*\._\w")
    found = [
        f"{p.relative_to(PKG.parent)}:{i}: {line.strip()}"
        for p in sorted(PKG.rglob("*.py"))
        if p != ADAPTER
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
    assert pattern.search(ADAPTER.read_text())  # the adapter is where they are (the pattern matches)
    for planted in ("from optuna.storages._rdb import models", "optuna.samplers.NSGAIISampler._get_generation_key()"):
        assert pattern.search(planted), planted  # the kinds a tester found outside the adapter are caught
