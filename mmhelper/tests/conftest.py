import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mmhelper():
    """Every module's names in one namespace, as the tests address the helper."""
    from tests.conftest import helper_namespace

    return helper_namespace()
