"""Build the mmhelper package into one self-contained Python file (workstation side; not
part of the bundle).

The file carries each module's source and a small import hook that loads them by name, so
the modules keep their ordinary `from mmhelper.x import y` imports and tracebacks name the
module and line. The output depends only on the sources: the same sources give the same
bytes, so the installed copy stays unchanged between runs (idempotence).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BUNDLED = {"bundle.py"}

LOADER = '''
import importlib.abc
import importlib.util
import sys


class _Bundle(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in _SOURCES:
            return importlib.util.spec_from_loader(name, self, is_package=_FILES[name].endswith("__init__.py"))
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(_SOURCES[module.__name__], "mmhelper/" + _FILES[module.__name__], "exec")
        exec(code, module.__dict__)


if not any(isinstance(f, _Bundle) for f in sys.meta_path):
    sys.meta_path.insert(0, _Bundle())

if __name__ == "__main__":
    from mmhelper.main import main

    sys.exit(main(sys.argv[1:]))
'''


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package and its subpackages (tests and
    this builder excluded)."""
    found = {}
    for path in sorted(HERE.rglob("*.py")):
        relative = path.relative_to(HERE)
        if path.name in NOT_BUNDLED and len(relative.parts) == 1 or relative.parts[0] == "tests":
            continue
        parts = ["mmhelper", *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@cache
def build() -> str:
    parts = ["#!/usr/bin/python3\n",
             "# The Mattermost deploy's server-side helper, built from the mmhelper/ package of the\n",
             "# deploy's repository (mmhelper/bundle.py). Do not edit: the next deploy replaces it.\n",
             "_SOURCES = {\n"]
    files = {}
    for name, path in modules().items():
        parts.append(f"    {name!r}: {path.read_text()!r},\n")
        files[name] = path.relative_to(HERE).as_posix()
    parts.append("}\n")
    parts.append(f"_FILES = {files!r}\n")
    parts.append(LOADER)
    return "".join(parts)
