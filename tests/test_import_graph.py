"""The house plan holds: no import circle in harness/ and detectors/ (function-level imports included),
detectors/ never imports harness/, modules stay short, and the runner names no detector."""
import ast
import re
from pathlib import Path

from harness.config import DETECTORS

ROOT = Path(__file__).resolve().parents[1]
# Modules allowed past ~400 lines, each with its reason.
LONG_OK = {
    "harness.report.plots": "one seaborn function per figure kind; splitting would scatter the shared styling",
    "harness.report.sections": "the report's small sections, each a short function",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("detectors/**/*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):  # every level: function-level imports too
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in map(resolve, targets) if t and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_detectors_never_import_the_harness():
    graph = import_graph()
    upward = {m: sorted(t for t in ts if t.startswith("harness")) for m, ts in graph.items() if m.startswith("detectors")}
    assert {m: ts for m, ts in upward.items() if ts} == {}


def test_modules_stay_short():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 420 and m not in LONG_OK}
    assert long == {}


def test_runner_names_no_detector():
    source = (ROOT / "harness" / "run" / "runner.py").read_text()
    named = {d for d in DETECTORS if re.search(rf"[\"']{d}[\"']", source)}
    assert named == set()
