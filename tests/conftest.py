import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def helper_namespace() -> SimpleNamespace:
    """The names of every module of the server-side package (mmhelper/) in one namespace."""
    import importlib

    from mmhelper.bundle import modules

    names = {}
    for module in modules():
        names.update({k: v for k, v in vars(importlib.import_module(module)).items() if not k.startswith("__")})
    return SimpleNamespace(**names)


@pytest.fixture(scope="session")
def mmhelper():
    """The server-side helper, imported on the workstation to test its pure functions."""
    return helper_namespace()
