"""The shape the next engineer relies on: no import cycles inside qjm (TYPE_CHECKING imports
count too), and no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from qjm.ops.cluster import ROOT

PACKAGES = ("qjm", "workers")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """qjm modules that ``name`` imports anywhere in its file (functions and TYPE_CHECKING included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_import_cycles():
    mods = modules()
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of concepts: drop edges
    # from a module to the package that contains it.
    for name, deps in graph.items():
        deps.difference_update({d for d in deps if name.startswith(d + ".")})
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"



def test_bench_and_make_name_test_files_that_exist():
    """What ``make chaos`` and the other benches print points a reader at test files: each must be there,
    and none may be called missing (``bench/chaos.py`` once said tests/test_hosts.py was "not in this tree yet")."""
    import re

    texts = {p.name: p.read_text() for p in [ROOT / "Makefile", *sorted((ROOT / "bench").glob("*.py"))]}
    named = {(src, ref) for src, text in texts.items() for ref in re.findall(r"tests/[\w/]+\.py", text)}
    assert ("chaos.py", "tests/test_hosts.py") in named
    assert not [f"{src}: {ref}" for src, ref in named if not (ROOT / ref).is_file()]
    assert not [src for src, text in texts.items() if "not in this tree" in text]
