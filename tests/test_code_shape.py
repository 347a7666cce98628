"""The files a student reads stay readable: no function there over 50 lines or over 6 parameters
(self and cls not counted, *args and **kwargs counted), and train.py a script of at most 450
lines. Counted with ast, so a docstring counts as lines and a decorator does not."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READ = ("train.py", "config.py", "evaluation.py", "runs.py", "transformer.py", "skim.py",
        "rl_policy.py", "ltp.py", "flops.py", "data.py", "readers.py", "synthetic.py",
        "metrics.py")  # fmt: skip
MAX_LINES, MAX_PARAMS, TRAIN_LINES = 50, 6, 450
# the one exception: SQuAD's post-processing takes the official script's three knobs (n-best,
# longest answer, null threshold) beside the examples, features and two sets of logits
WIDE = {("data.py", "squad_predictions")}


def functions(source: str):
    """(name, first line, lines, parameters) of every function and method in the source, but
    those whose body is an assignment's (between `# ASSIGNMENT N` markers): in a student's copy
    that body is theirs, and its length is not this test's business."""
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if any("# ASSIGNMENT" in line for line in lines[node.lineno - 1 : node.end_lineno]):
            continue
        a = node.args
        names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
        params = len([n for n in names if n not in ("self", "cls")])
        params += (a.vararg is not None) + (a.kwarg is not None)
        yield node.name, node.lineno, node.end_lineno - node.lineno + 1, params


@pytest.mark.parametrize("name", READ)
def test_no_function_is_too_long_or_too_wide(name):
    found = [
        f"{name}:{line} {fn}: {lines} lines, {params} parameters"
        for fn, line, lines, params in functions((ROOT / name).read_text())
        if lines > MAX_LINES or (params > MAX_PARAMS and (name, fn) not in WIDE)
    ]
    assert not found, f"over {MAX_LINES} lines or {MAX_PARAMS} parameters: split it, or pass " \
        "a dataclass: " + "; ".join(found)  # fmt: skip


def test_train_py_stays_a_script_one_can_read_in_one_sitting():
    lines = len((ROOT / "train.py").read_text().splitlines())
    assert lines <= TRAIN_LINES, f"train.py has {lines} lines (at most {TRAIN_LINES})"


def test_the_counter_counts():
    source = "class A:\n    def f(self, a, b, *c, d, **e):\n        'doc'\n        return 1\n"
    assert list(functions(source)) == [("f", 2, 3, 5)]
    marked = "def g(x):\n    # ASSIGNMENT 9 BEGIN: t (assignments/09_t.md)\n    return x\n"
    assert list(functions(marked)) == []  # a student's body: theirs
