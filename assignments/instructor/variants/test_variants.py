"""The variants (assignments/instructor/variants/): their references pass, the public code and
known-wrong solutions fail.

A variant is worth something only if (1) its reference scores full marks under `grade.py
--variant KEY`, (2) the repository's public code, which solves the public assignment, fails it
(copying the repository earns little), and (3) the mistakes students make fail it, for the right
reason: the first check that fails is the one named, and its message names the mistake.

Grading runs one process per variant, each importing torch (about 1.5 s), so the references are
graded in one copy with all five variants at once, the public code once, and the mutants in a few
rounds: round i holds the i-th mutant of every variant (at most one mutant per assignment in a
copy), every other variant function keeping its variant reference.
"""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "assignments"))
sys.path.insert(0, str(HERE))

import make_student  # noqa: E402
from references import MUTANTS, REFERENCES  # noqa: E402

GRADE = REPO / "assignments" / "grade.py"
KEYS = sorted(REFERENCES)  # 1b … 5b

# Round i: the i-th mutant of each variant (in MUTANTS' order).
_BY_VARIANT = {k: [n for n, m in MUTANTS.items() if m[0] == k] for k in KEYS}
ROUNDS = [
    [name for name in names if name is not None]
    for names in itertools.zip_longest(*_BY_VARIANT.values())
]


def grade(directory: Path, report: Path, keys) -> dict:
    """grade.py on `directory` with these variants; {variant key: report entry}."""
    done = subprocess.run(
        [sys.executable, str(GRADE), str(directory), "--report", str(report), "--jobs", "2",
         "--variant", *keys],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert report.is_file(), f"grade.py wrote no report:\n{done.stdout}\n{done.stderr}"
    return {a["variant"]: a for a in json.loads(report.read_text())["assignments"]}


def variant_copy(path: Path, mutants=()) -> Path:
    """A solved copy with every variant's reference in place, then the given mutants."""
    make_student.make_student(path, only=set())
    for bodies in REFERENCES.values():
        for (file, function), body in bodies.items():
            make_student.replace_body(path, file, function, body)
    for name in mutants:
        _, file, function, body = MUTANTS[name][:4]
        make_student.replace_body(path, file, function, body)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    """{"reference": …, "public": …, "round0": …, …}: each {variant key: report entry}."""
    base = tmp_path_factory.mktemp("variants")
    results = {
        "reference": grade(variant_copy(base / "reference"), base / "reference.json", KEYS),
        "public": grade(REPO, base / "public.json", KEYS),
    }
    for i, names in enumerate(ROUNDS):
        copy = variant_copy(base / f"round{i}", names)
        keys = sorted({MUTANTS[n][0] for n in names})
        results[f"round{i}"] = grade(copy, base / f"round{i}.json", keys)
    return results


def test_each_variant_has_a_reference_a_handout_and_five_mutants():
    assert KEYS == ["1b", "2b", "3b", "4b", "5b"]
    listing = subprocess.run(
        [sys.executable, str(GRADE), "--list"], capture_output=True, text=True, check=True
    ).stdout
    regions = {
        (r.path, r.function, r.number) for rs in make_student.plan(REPO).values() for r in rs
    }
    for key in KEYS:
        number = int(key[0])
        assert f"{key}. " in listing, f"grade.py --list does not list variant {key}"
        handouts = list(HERE.glob(f"{key}_*.md"))
        assert len(handouts) == 1, f"variant {key} needs one handout {key}_*.md in {HERE}"
        assert str(handouts[0].relative_to(REPO)) in listing
        # the reference writes exactly the marked functions of assignment N
        written = {(file, function) for file, function in REFERENCES[key]}
        assert written == {(p, f) for p, f, n in regions if n == number}, key
        assert len(_BY_VARIANT[key]) >= 5, f"variant {key} has fewer than 5 mutants"
    assert all(len({MUTANTS[n][0] for n in names}) == len(names) for names in ROUNDS)


def test_each_reference_scores_full_marks(graded):
    results = graded["reference"]
    assert sorted(results) == KEYS
    for key, r in results.items():
        assert r["status"] == "PASS", f"variant {key}: {r['message']}"
        assert r["earned"] == r["possible"] > 0


@pytest.mark.parametrize("key", KEYS)
def test_the_public_code_fails_each_variant(graded, key):
    r = graded["public"][key]
    assert r["status"] == "FAIL", f"the public code passes variant {key}"
    # copying the repository earns little: at most a fifth of the points
    assert r["earned"] <= r["possible"] // 5, (key, r["earned"], r["possible"])


@pytest.mark.parametrize("name", list(MUTANTS))
def test_known_wrong_solution_fails_its_variant_with_a_helpful_message(graded, name):
    key, _, _, _, failing_check, words = MUTANTS[name]
    i = next(i for i, names in enumerate(ROUNDS) if name in names)
    r = graded[f"round{i}"][key]
    assert r["status"] == "FAIL", f"{name} passed"
    failed = [c for c in r["checks"] if not c["passed"]]
    assert failing_check in failed[0]["name"], (name, failed[0]["name"])
    assert words in r["message"], (name, r["message"])


def test_the_student_copy_holds_neither_variants_nor_their_references(tmp_path):
    make_student.make_student(tmp_path / "student")
    assert (tmp_path / "student" / "assignments" / "grade.py").is_file()
    assert not (tmp_path / "student" / "assignments" / "instructor").exists()
