from pathlib import Path

import pytest

# pytester's in-process runs drop the modules imported during them, and numpy's C extension
# cannot be imported twice in one process: load the gate's scientific stack up front.
import scipy.stats  # noqa: F401

FAKE_BACKEND = Path(__file__).with_name("fake_backend.py").read_text()


@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory whose conftest registers the ``fake`` backend kind."""
    pytester.makeconftest(FAKE_BACKEND)
    return pytester
