import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mmhelper():
    """The server-side helper, imported on the workstation to test its pure functions."""
    path = ROOT / "templates/usr/local/lib/mattermost-deploy/mmhelper.py"
    spec = importlib.util.spec_from_file_location("mmhelper", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
