from pathlib import Path

import pytest

FAKE_BACKEND = Path(__file__).with_name("fake_backend.py").read_text()


@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory whose conftest registers the ``fake`` backend kind."""
    pytester.makeconftest(FAKE_BACKEND)
    return pytester
