"""Session fixtures for the test suite."""

from __future__ import annotations

import numpy as np
import pytest

from support import DIGITS


@pytest.fixture(scope="session")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The 450-image digits test split the example model was evaluated on."""
    return np.load(DIGITS / "data" / "test_x.npy"), np.load(DIGITS / "data" / "test_y.npy")
