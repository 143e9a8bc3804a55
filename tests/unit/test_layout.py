"""How the code is laid out, checked: no import circle among tasks/ (every import counts,
also those inside functions), no server-side module over 400 lines, and one deterministic
helper file built from the server-side package."""

import ast
import subprocess
import sys
from pathlib import Path

from mmhelper.bundle import build, modules

ROOT = Path(__file__).resolve().parents[2]


PACKAGES = ("tasks", "verbs", "facts", "mmhelper", "bench", "tests")


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ".cache" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """module -> the project's modules it imports (anywhere in the file, also inside functions)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name and not name.startswith(m + ".")}
    return graph


def task_imports() -> dict[str, set[str]]:
    """tasks module -> the tasks modules it imports (anywhere in the file)."""
    return {name.split(".", 1)[1]: {m.split(".", 1)[1] for m in deps if m.startswith("tasks.")}
            for name, deps in imports().items() if name.startswith("tasks.")}


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


def test_no_import_circle_anywhere():
    graph = imports()
    # the check sees imports in every package, also those inside functions
    assert graph["mmhelper.steps.state"] >= {"mmhelper.parts.discover", "mmhelper.steps.adopt"}
    assert "verbs.jobs" in graph["verbs.job"] and "tasks.state" in graph["verbs.server_actions"]
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


def test_the_server_package_is_laid_out_by_kind():
    """Jobs on the engine, the mechanics they use, the one-shot steps: nothing else beside main."""
    top = {p.name for p in (ROOT / "mmhelper").iterdir() if not p.name.startswith((".", "__"))}
    assert top == {"jobs", "parts", "steps", "tests", "main.py", "bundle.py"}, top


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


def test_the_state_read_fits_in_one_command():
    """The whole helper travels inline in the state read's command (one SSH command: the shell
    gets it as one argument, at most 128 KiB on Linux): a larger helper cannot read a server."""
    from facts.mattermost import COMMAND_LIMIT, MattermostServer

    command = MattermostServer().command('{"query": "' + "x" * 4000 + '"}')
    assert len(command.encode()) < COMMAND_LIMIT - 8192, len(command)


def test_the_helper_is_written_for_python_3_9():
    """Debian 11's Python is 3.9: the helper must not use what came later (vermin reads the
    source for every feature's minimum version). The e2e story on Debian 11 runs it there."""
    files = [str(p) for p in modules().values()]
    done = subprocess.run([str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", "-t=3.9-", *files],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
