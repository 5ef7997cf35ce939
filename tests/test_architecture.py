"""The shape of the code base: no import cycles, no private names across modules, a headless engine.

The checks read the source with `ast` (nothing is imported), so they see lazy imports inside
functions too; imports under `if TYPE_CHECKING:` are left out (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"engine": "actlab.engine", "tui": "actlab.tui"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] in PACKAGES:
        parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    else:  # bench scripts: top-level modules of their own
        parts = list(rel.parts)
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (TYPE_CHECKING blocks skipped)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names."""
    if node.level == 0:
        return node.module or ""
    base = module_name(path).split(".")
    if not is_package(path):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def known_modules() -> set[str]:
    return {module_name(p) for p in project_files("engine", "tui")}


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports (a submodule import also runs its packages)."""
    modules = known_modules()
    graph: dict[str, set[str]] = {}
    for path in project_files("engine", "tui"):
        me = module_name(path)
        targets: set[str] = set()
        for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [resolve(path, node)] + [f"{resolve(path, node)}.{a.name}" for a in node.names])
            for name in names:
                parts = name.split(".")
                for i in range(len(parts), 0, -1):
                    candidate = ".".join(parts[:i])
                    if candidate in modules:
                        targets.add(candidate)
        targets.discard(me)
        # a module's own package (__init__) runs before it: importing it is not a cycle
        graph[me] = {t for t in targets if not me.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_project_modules():
    graph = import_graph()
    assert len(graph) > 30, "the scan found too few modules to mean anything"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def private_uses(path: Path, text: str | None = None) -> list[str]:
    """`from project.module import _name` and `module._name` on an imported project module."""
    modules = known_modules()
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    found: list[str] = []
    aliases: set[str] = set()
    for node in runtime_imports(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(path, node)
            if source.split(".")[0] not in ("actlab", "engine", "tui") and source not in modules:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {alias.name}")
                if f"{source}.{alias.name}" in modules:
                    aliases.add(alias.asname or alias.name)
        else:
            for alias in node.names:
                if alias.name in modules:
                    aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_private_name_check_catches_both_spellings():
    text = ("from actlab.engine.config import _where\nfrom actlab.engine import runs\nruns._private()\n"
            "from actlab.engine.runs import read_run\nfrom .feed import _helper\n")
    found = private_uses(ROOT / "tui" / "cli.py", text)
    assert [f.split(": ", 1)[1] for f in found] == [
        "from actlab.engine.config import _where", "from actlab.tui.feed import _helper", "runs._private"]


@pytest.mark.parametrize("top", ["tui", "bench", "engine"])
def test_no_private_names_imported_across_modules(top):
    found = [use for path in project_files(top) for use in private_uses(path)]
    assert not found, "\n".join(found)


def test_engine_never_imports_textual():
    code = ("import sys, actlab.engine.lab, actlab.engine.probes, actlab.engine.training; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    textual_in_source = [str(p.relative_to(ROOT)) for p in project_files("engine")
                         if any((isinstance(n, ast.ImportFrom) and (n.module or "").startswith("textual"))
                                or (isinstance(n, ast.Import) and any(a.name.startswith("textual") for a in n.names))
                                for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert textual_in_source == []
