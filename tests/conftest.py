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


# The end-to-end stories side by side (make test: pytest-xdist): each story - a test module on its
# own containers and ports, or the modules that share the main test server - runs whole on one
# worker, in order, the longest first (tests/e2e/conftest.py orders them). pytest-xdist's own
# `--dist loadgroup` cannot do it with pytest 9 (it renames item._nodeid, which pytest 9 no
# longer reads), so the stories are its scopes here.
SHARED_SERVER_MODULES = ("tests/e2e/test_bad_input.py", "tests/e2e/test_converge.py")


def story_of_nodeid(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "e2e-main" if path in SHARED_SERVER_MODULES else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class StoryScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return story_of_nodeid(nodeid)

        def schedule(self) -> None:
            self.config.option.loadscopereorder = False  # the collection's order: the longest stories first
            super().schedule()

    return StoryScheduling(config, log)
