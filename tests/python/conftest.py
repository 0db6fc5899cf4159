import pytest

import keel


@pytest.fixture
def ws(tmp_path):
    """A fresh workspace in a temporary directory."""
    return keel.open(tmp_path / "ws.keel")
