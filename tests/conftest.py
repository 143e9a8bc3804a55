import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mmhelper():
    """The server-side helper, imported on the workstation to test its pure functions."""
    from facts.mattermost import helper_module

    return helper_module()
