"""The teaching kit (assignments/): the student copy, the grader, and known-wrong solutions.

The grader is only worth something if wrong code fails it. Each mutant below is a mistake students
make, written into a copy of the repository in place of a reference solution; the grader must fail
that assignment, for the right reason (its message names the mistake), and leave the others alone.
The reference repository must score full marks and the untouched student copy zero.

Grading runs one process per assignment, each importing torch, so copies are graded a few mutants
at a time (one per assignment) to keep this file under a minute on two cores.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "assignments"))

import checks  # noqa: E402
import make_student  # noqa: E402

GRADE = REPO / "assignments" / "grade.py"


def grade(directory: Path, report: Path, *args: str) -> tuple[int, dict]:
    """Run grade.py on `directory`; (exit status, {number: report entry})."""
    done = subprocess.run(
        [sys.executable, str(GRADE), str(directory), "--report", str(report), "--jobs", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.is_file(), f"grade.py wrote no report:\n{done.stdout}\n{done.stderr}"
    entries = json.loads(report.read_text())["assignments"]
    return done.returncode, {a["number"]: a for a in entries}


def solved_copy(path: Path) -> Path:
    """A copy of the repository with every reference solution in place (nothing stubbed)."""
    make_student.make_student(path, only=set())
    return path


# ----------------------------------------------------------------------------------------------
# The reference, the student copy, the markers


def test_reference_repository_scores_full_marks(tmp_path):
    status, results = grade(REPO, tmp_path / "grade.json")
    assert sorted(results) == sorted(checks.ASSIGNMENTS)
    for number, r in results.items():
        assert r["status"] == "PASS", f"assignment {number}: {r['message']}"
        assert r["earned"] == r["possible"] == checks.ASSIGNMENTS[number].points > 0
    assert status == 0
    assert sum(r["earned"] for r in results.values()) == sum(
        a.points for a in checks.ASSIGNMENTS.values()
    )


def test_student_copy_keeps_signatures_runs_and_scores_zero(tmp_path):
    out = tmp_path / "student"
    stubbed = make_student.make_student(out)
    assert {r.number for r in stubbed} == set(checks.ASSIGNMENTS)
    for r in stubbed:  # the stub is the whole body; signature and docstring are the reference's
        tree = ast.parse((out / r.path).read_text())
        node = next(
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.name == r.function.split(".")[-1]
        )
        reference = ast.parse((REPO / r.path).read_text())
        original = next(
            n for n in ast.walk(reference) if isinstance(n, ast.FunctionDef) and n.name == node.name
        )
        assert ast.get_docstring(node) == ast.get_docstring(original)
        assert ast.unparse(node.args) == ast.unparse(original.args)
        assert isinstance(node.body[-1], ast.Raise) and len(node.body) == 2, r.function
        assert r.handout in ast.unparse(node.body[-1])
    assert (out / "assignments" / "02_gumbel.md").is_file() and not (out / ".git").exists()

    status, results = grade(out, tmp_path / "grade.json")
    assert status == 1
    for number, r in results.items():
        assert r["status"] == "FAIL" and r["earned"] == 0, number
        # the stub's own message: the module imported, and only the stubbed function raised
        assert "not written yet" in r["message"]
        # assignment 6 runs LTP, which reads attention: the stub of assignment 1 stops it first
        handout = "assignments/01_attention.md" if number == 6 else r["handout"]
        assert handout in r["message"], (number, r["message"])


def test_make_student_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert make_student.main([str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_every_marked_region_belongs_to_a_registered_assignment_with_a_handout():
    regions = make_student.plan(REPO)
    marked = {(r.number, r.qualified) for rs in regions.values() for r in rs}
    registered = {(a.number, f) for a in checks.ASSIGNMENTS.values() for f in a.functions}
    assert marked == registered
    for a in checks.ASSIGNMENTS.values():
        assert (REPO / a.handout).is_file()
        assert {r.handout for rs in regions.values() for r in rs if r.number == a.number} == {
            a.handout
        }


# ----------------------------------------------------------------------------------------------
# Known-wrong solutions

# name: (file, function, wrong body, check that must fail, words its message must contain)
MUTANTS = {
    "a strategy that keeps pads": (
        "ltp.py",
        "LTP.decide",
        """
        keep = torch.ones_like(alive)
        return keep.bool() if ctx.pruning else keep
        """,
        "never keeps a pad",
        "keeps a pad",
    ),
    "attention masked without renormalising": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        probs = scores.softmax(-1)
        if key_mask is not None:
            probs = probs * key_mask.to(scores.dtype)[:, None, None, :]
        return F.dropout(probs, p_drop, self.training) @ v
        """,
        "renormalises",
        "renormalise",
    ),
    "Gumbel with no noise": (
        "skim.py",
        "gumbel_keep",
        """
        soft = (logits / tau).softmax(-1)[..., 1]
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "keeps each token with probability",
        "no noise",
    ),
    "Gumbel with tau ignored": (
        "skim.py",
        "gumbel_keep",
        """
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = (logits + gumbel).softmax(-1)[..., 1]
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "straight through",
        "divided by τ",
    ),
    "hard Gumbel sample with no straight-through gradient": (
        "skim.py",
        "gumbel_keep",
        """
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = ((logits + gumbel) / tau).softmax(-1)[..., 1]
        return (soft > 0.5).to(logits.dtype)
        """,
        "straight through",
        "carries no gradient",
    ),
    "skim loss divided by the padded length": (
        "skim.py",
        "skim_loss",
        """
        kept = torch.stack([m.sum(1) for m in out.masks], 1)
        return (kept / attention_mask.shape[1]).mean()
        """,
        "hand-worked batch",
        "padded length",
    ),
    "REINFORCE without a baseline": (
        "rl_policy.py",
        "reinforce_loss",
        "return -(rewards.detach() * log_probs).mean()",
        "hand-worked loss",
        "without a baseline",
    ),
    "REINFORCE with one baseline shared across examples": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach()
        return -((r - r.mean()) * log_probs).mean()
        """,
        "hand-worked loss",
        "one baseline for the whole batch",
    ),
    "reward with its sign flipped": (
        "rl_policy.py",
        "reward",
        """
        fraction = selected.to(task_loss.dtype) / lengths[:, None].to(task_loss.dtype)
        return task_loss - length_penalty * fraction.mean(1)
        """,
        "reward: R =",
        "sign",
    ),
    "FLOPs without the attention n² terms": (
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        return {
            "qkv": 3 * 2 * n * d * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "n²",
    ),
}
# One copy per round, with at most one mutant per assignment; the other functions keep the
# reference. Each round: (mutants, assignments graded).
ROUNDS = [
    (
        [
            "attention masked without renormalising",
            "Gumbel with no noise",
            "skim loss divided by the padded length",
            "REINFORCE without a baseline",
            "FLOPs without the attention n² terms",
        ],
        [1, 2, 3, 4, 5],
    ),
    # assignment 3 has no mutant here: it must still pass
    (["Gumbel with tau ignored", "REINFORCE with one baseline shared across examples"], [2, 3, 4]),
    (
        ["hard Gumbel sample with no straight-through gradient", "reward with its sign flipped"],
        [2, 4],
    ),
    (["a strategy that keeps pads"], [6]),
]
NUMBER = {
    "transformer.py": 1,
    "flops.py": 5,
    "rl_policy.py": 4,
    "ltp.py": 6,
}  # skim.py: 2 or 3, by function


def _number(path: str, function: str) -> int:
    return NUMBER.get(path) or (3 if function == "skim_loss" else 2)


CHEAT = """# A student's checks.py that passes everything: the grader must never import it.
raise SystemExit("the grader imported the graded copy's checks.py")
"""


@pytest.fixture(scope="module")
def rounds(tmp_path_factory) -> list[dict]:
    """Grade each round's copy. The last one carries a checks.py of its own, at the top and in
    assignments/, which the grader must ignore."""
    reports = []
    for i, (names, numbers) in enumerate(ROUNDS):
        base = tmp_path_factory.mktemp(f"round{i + 1}")
        copy = solved_copy(base / "copy")
        for name in names:
            path, function, body = MUTANTS[name][:3]
            make_student.replace_body(copy, path, function, body)
        if i == len(ROUNDS) - 1:
            (copy / "checks.py").write_text(CHEAT)
            (copy / "assignments").mkdir(exist_ok=True)
            (copy / "assignments" / "checks.py").write_text(CHEAT)
        reports.append(grade(copy, base / "grade.json", "--only", *map(str, numbers))[1])
    return reports


@pytest.mark.parametrize("name", list(MUTANTS))
def test_known_wrong_solution_fails_its_assignment_with_a_helpful_message(rounds, name):
    path, function, _, failing_check, words = MUTANTS[name]
    results = rounds[next(i for i, (names, _) in enumerate(ROUNDS) if name in names)]
    r = results[_number(path, function)]
    assert r["status"] == "FAIL", f"{name} passed"
    assert r["earned"] < r["possible"]
    failed = [c for c in r["checks"] if not c["passed"]]
    assert failing_check in failed[0]["name"], (name, failed[0]["name"])
    assert words in r["message"], (name, r["message"])


def test_a_mutant_leaves_the_other_assignments_passing(rounds):
    results = rounds[1]  # mutants in assignments 2 and 4 only
    assert {n: r["status"] for n, r in results.items()} == {2: "FAIL", 3: "PASS", 4: "FAIL"}
    assert results[3]["earned"] == results[3]["possible"]


def test_a_module_that_does_not_import_fails_only_the_assignments_that_need_it(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    with open(copy / "rl_policy.py", "a") as f:
        f.write("\ndef broken(:\n")
    status, results = grade(copy, tmp_path / "grade.json", "--only", "4", "5")
    assert status == 1
    assert results[5]["status"] == "PASS"
    assert results[4]["status"] == "FAIL" and results[4]["earned"] == 0
    assert "could not import rl_policy.py" in results[4]["message"]
    assert "SyntaxError" in results[4]["message"]


def test_an_endless_loop_is_stopped_by_the_timeout(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, "flops.py", "layer_flops", "while True:\n    pass")
    status, results = grade(copy, tmp_path / "grade.json", "--only", "5", "--timeout", "3")
    assert status == 1 and results[5]["status"] == "FAIL" and results[5]["earned"] == 0
    assert "did not finish within 3 s" in results[5]["message"]
