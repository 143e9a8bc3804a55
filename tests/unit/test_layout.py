"""How the code is laid out, checked: no import circle among tasks/ (every import counts,
also those inside functions), no server-side module over 400 lines, and one deterministic
helper file built from the server-side package."""

import ast
import subprocess
import sys
from pathlib import Path

from mmhelper.bundle import build, modules

ROOT = Path(__file__).resolve().parents[2]


def task_imports() -> dict[str, set[str]]:
    """tasks module -> the tasks modules it imports (anywhere in the file)."""
    names = {p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in names:
        tree = ast.parse((ROOT / "tasks" / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "tasks":
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tasks.")}
        graph[name] = found & names
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting, done = [], set()

    def visit(node):
        if node in visiting:
            return visiting[visiting.index(node):] + [node]
        if node in done:
            return None
        visiting.append(node)
        for nxt in sorted(graph[node]):
            circle = visit(nxt)
            if circle:
                return circle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        circle = visit(node)
        if circle:
            return circle
    return None


def test_the_check_finds_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_tasks():
    graph = task_imports()
    assert graph["state"] >= {"base", "config", "housekeeping"}  # the check sees the imports
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


def test_no_server_module_over_400_lines():
    sizes = {path.name: len(path.read_text().splitlines()) for path in modules().values()}
    assert len(sizes) >= 10 and max(sizes.values()) <= 400, sizes


def test_the_helper_is_built_the_same_every_time_and_runs(tmp_path):
    first = build()
    build.cache_clear()
    assert build() == first
    bundle = tmp_path / "mmhelper.py"
    bundle.write_text(first)
    done = subprocess.run([sys.executable, str(bundle), "unhold", '{"hold_file": "/nonexistent/hold.json"}'],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "no upgrade is held", done.stderr
    usage = subprocess.run([sys.executable, str(bundle)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "mmhelper.py state QUERY_JSON" in usage.stderr
