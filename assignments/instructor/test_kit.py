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
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "assignments"))
sys.path.insert(0, str(REPO / "assignments" / "instructor"))

import checks  # noqa: E402
import grade as grade_module  # noqa: E402
import make_student  # noqa: E402
import mutants  # noqa: E402

checks.load_instructor_checks()  # as grade.py does: the hidden checks count in the totals

GRADE = REPO / "assignments" / "grade.py"


# Assignment 6 draws its keywords at each grading: here, one draw under which the reference was
# measured to pass (the instructor guide's table), so that these tests repeat themselves
ROLES = {"SKIMBERT_WORD_ROLES": "343100,682843,318337"}


def grade(directory: Path, report: Path, *args: str) -> tuple[int, dict]:
    """Run grade.py on `directory`; (exit status, {number: report entry})."""
    done = subprocess.run(
        [sys.executable, str(GRADE), str(directory), "--report", str(report), "--jobs", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ROLES},
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
        # assignment 6 too stops at its own stub: it is graded on the reference of 1-5
        assert r["handout"] in r["message"], (number, r["message"])


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
# No answers in the student copy


def test_the_student_copy_holds_no_line_of_an_answer_and_no_instructor_file(tmp_path, capsys):
    out = tmp_path / "student"
    assert make_student.main([str(out)]) == 0
    said = capsys.readouterr().out
    assert "left out the instructor's kit" in said and "none found" in said
    assert not (out / "assignments" / "instructor").exists()
    # every code line of every reference body, searched for in every text file of the copy
    lines = make_student.code_lines(REPO, make_student.plan(REPO))
    assert len(lines) > 40  # the search is not empty: the bodies of the 11 functions
    assert make_student.leaks(out, lines) == []
    # and the search finds an answer where there is one, typographic minus or not
    (out / "notes.md").write_text("my solution:\n    return hard + (soft \u2212 soft.detach())\n")
    assert [hit.split(":")[0] for hit in make_student.leaks(out, lines)] == ["notes.md"]


# The tricks that are the answers, in any spelling a line search would miss: the straight-through
# estimator (x + (y - y.detach())), Gumbel noise from exponential or uniform draws, a baseline
# from a view of the rewards by samples, the FLOPs remainder to the first token.
ANSWER_IDIOMS = {
    "straight-through": r"(\w+)\s*[-\u2212]\s*\1\.detach\(\)",
    "Gumbel noise": r"exponential_\(\)\s*\.log\(\)|log\(\s*-\s*torch\.log\(",
    "per-example baseline": r"view\(\s*-1\s*,\s*num_samples\s*\)",
    "FLOPs remainder": r"//\s*arriving\[",
}


def test_the_student_copy_holds_no_idiom_of_an_answer(tmp_path):
    out = tmp_path / "student"
    make_student.make_student(out)
    found = []
    for file in sorted(out.rglob("*")):
        if file.is_file() and file.suffix in (".py", ".md", ".ipynb", ".txt", ".html"):
            text = file.read_text(errors="replace")
            for idiom, pattern in ANSWER_IDIOMS.items():
                for match in re.finditer(pattern, text):
                    found.append(f"{file.relative_to(out)}: {idiom}: {match.group(0)!r}")
    assert found == [], "\n".join(found)
    # the search finds what it looks for
    assert re.search(ANSWER_IDIOMS["straight-through"], "hard + (soft \u2212 soft.detach())")


def test_make_student_stops_when_a_file_would_hand_out_an_answer(tmp_path):
    repo = solved_copy(tmp_path / "repo")  # not a git checkout: every file is copied
    answer = "    kept = torch.stack([m.sum(1) for m in out.masks], 1)\n"
    (repo / "docs" / "answer.md").write_text(answer)
    with pytest.raises(make_student.MarkerError, match="still holds 1 line"):
        make_student.make_student(tmp_path / "student", root=repo)


# ----------------------------------------------------------------------------------------------
# Known-wrong solutions (mutants.py), and other right ones


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, dict]:
    """Every mutant and right solution of mutants.py, graded in one process."""
    copy = solved_copy(tmp_path_factory.mktemp("mutants") / "copy")
    done = subprocess.run(
        [sys.executable, str(REPO / "assignments" / "instructor" / "mutants.py"), str(copy)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=copy,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_at_least_six_known_wrong_solutions_per_assignment():
    counts = {}
    for path, function, *_ in mutants.MUTANTS.values():
        number = mutants._assignment(path, function)
        counts[number] = counts.get(number, 0) + 1
    assert sorted(counts) == sorted(checks.ASSIGNMENTS)
    assert all(count >= 6 for count in counts.values()), counts


@pytest.mark.parametrize("name", list(mutants.MUTANTS))
def test_known_wrong_solution_fails_its_assignment_naming_the_mistake(verdicts, name):
    _, _, _, failing_check, words = mutants.MUTANTS[name]
    v = verdicts[name]
    assert not v["passed"], f"{name} passed"
    assert failing_check in v["failed_check"], (name, v["failed_check"], v["message"])
    assert words in v["message"], (name, v["message"])


@pytest.mark.parametrize("name", list(mutants.RIGHT))
def test_another_right_solution_earns_full_marks(verdicts, name):
    v = verdicts[name]
    assert v["passed"] and v["earned"] == v["possible"], (name, v["message"])


CHEAT = """# A student's checks.py that passes everything: the grader must never import it.
raise SystemExit("the grader imported the graded copy's checks.py")
"""


def test_a_mutant_leaves_the_other_assignments_passing(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    for name in ("Gumbel noise reseeded inside the function", "REINFORCE without a baseline"):
        make_student.replace_body(copy, *mutants.MUTANTS[name][:3])
    # a checks.py of the copy's own, at the top and in assignments/: the grader must ignore it
    (copy / "checks.py").write_text(CHEAT)
    (copy / "assignments" / "checks.py").write_text(CHEAT)
    status, results = grade(copy, tmp_path / "grade.json", "--only", "2", "3", "4")
    assert status == 1
    assert {n: r["status"] for n, r in results.items()} == {2: "FAIL", 3: "PASS", 4: "FAIL"}
    assert results[3]["earned"] == results[3]["possible"]
    assert "frozen" in results[2]["message"] and "without a baseline" in results[4]["message"]


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


def test_a_message_cannot_print_a_line_of_the_report_of_its_own(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    forged = "\\r\\x1b[2K  3. skim loss   PASS   18/18\\ntotal 18/18: 1 of 1 pass\\x1b[8m"
    make_student.replace_body(copy, "skim.py", "skim_loss", f'raise ValueError("{forged}")')
    done = subprocess.run(
        [sys.executable, str(GRADE), str(copy), "--only", "3", "--report", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "\x1b" not in done.stdout and "\r" not in done.stdout, done.stdout
    lines = done.stdout.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("3.")]
    assert len(rows) == 1 and " FAIL " in rows[0] and lines[-1].startswith("total 0/"), lines
    assert "\\x1b[2K" in done.stdout  # shown, escaped


def test_an_endless_loop_is_stopped_by_the_timeout(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, "flops.py", "layer_flops", "while True:\n    pass")
    status, results = grade(copy, tmp_path / "grade.json", "--only", "5", "--timeout", "3")
    assert status == 1 and results[5]["status"] == "FAIL" and results[5]["earned"] == 0
    assert "did not finish within 3 s" in results[5]["message"]


FORGER = """
import atexit, json, os

def _forge():  # write a verdict of full marks to every file, pipe and stream the grader reads
    fake = {"secret": "", "records": [{"name": "x", "points": 1000, "passed": True}]}
    text = json.dumps(fake)
    for fd in range(1, 64):
        try:
            os.write(fd, text.encode())
        except OSError:
            pass

_forge()
atexit.register(_forge)
"""


def grade_unwritten_flops_with(tmp_path, code: str) -> tuple[int, dict]:
    """Assignment 5 graded on a copy whose layer_flops is not written and whose flops.py ends
    with `code` (which runs when the checks import it)."""
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, "flops.py", "layer_flops", "raise NotImplementedError")
    with open(copy / "flops.py", "a") as f:
        f.write(code)
    return grade(copy, tmp_path / "grade.json", "--only", "5")


def test_student_code_cannot_forge_its_grade(tmp_path):
    status, results = grade_unwritten_flops_with(tmp_path, FORGER)
    assert status == 1
    assert results[5]["status"] == "FAIL" and results[5]["earned"] == 0
    assert results[5]["possible"] == checks.ASSIGNMENTS[5].points


PATCHER = """
import sys

try:  # switch the grader's checks off, every way a module can reach them by name
    import checks

    checks.expect = lambda *args, **kwargs: None
except ImportError:
    pass
grader = getattr(sys.modules.get("__main__"), "checks", None)  # grade.py's own module
if grader is not None:
    grader.expect = lambda *args, **kwargs: None
"""


def test_student_code_cannot_switch_the_checks_off(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, *mutants.MUTANTS["FLOPs counting one per multiply-add"][:3])
    with open(copy / "flops.py", "a") as f:
        f.write(PATCHER)
    status, results = grade(copy, tmp_path / "grade.json", "--only", "5")
    assert status == 1 and results[5]["status"] == "FAIL", results[5]
    assert results[5]["earned"] == 0, results[5]
    assert "tampered" in results[5]["message"], results[5]["message"]


def test_a_plain_import_of_checks_reaches_nothing_of_the_graders(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, *mutants.MUTANTS["FLOPs counting one per multiply-add"][:3])
    with open(copy / "flops.py", "a") as f:
        f.write(
            "\ntry:\n    import checks\n\n    checks.expect = print\nexcept ImportError:\n"
            "    pass\n"
        )
    status, results = grade(copy, tmp_path / "grade.json", "--only", "5")
    assert status == 1 and "That is half" in results[5]["message"], results[5]


POISON = """
import os as _os
import sys as _sys
from pathlib import Path as _Path

# rewrite "the grader's" checks.py: the one beside the worker's grade.py, and the one beside the
# grading process's own (found through its working folder and its command line)
_here = _Path(_sys.argv[0]).parent / "checks.py"
_parent = _Path(f"/proc/{_os.getppid()}/cwd")
_argv = open(f"/proc/{_os.getppid()}/cmdline").read().split("\\0")
_there = [_parent / _Path(a).parent / "checks.py" for a in _argv if a.endswith("grade.py")]
for _file in [_here, *_there]:
    if _file.is_file():
        _file.write_text(_file.read_text() + "\\ndef run_check(check):\\n    return 'forged'\\n")
"""


def kit_copy(path: Path) -> Path:
    """A copy of the grader's kit (the repository with the instructor's folder)."""
    names = {*make_student.repository_files(REPO), *make_student.instructor_files(REPO)}
    for name in sorted(names):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes((REPO / name).read_bytes())
    return path


PLANT = """
import os as _os
from pathlib import Path as _Path

# plant a package `checks` beside the grader's checks.py: Python would import it in its place
_parent = _Path(f"/proc/{_os.getppid()}/cwd")
for _a in open(f"/proc/{_os.getppid()}/cmdline").read().split("\\0"):
    if _a.endswith("grade.py"):
        _package = _parent / _Path(_a).parent / "checks"
        _package.mkdir(exist_ok=True)
        (_package / "__init__.py").write_text("raise SystemExit('planted')\\n")
"""


PLANT_PYC = PLANT.replace(
    '_package = _parent / _Path(_a).parent / "checks"',
    '_package = _parent / _Path(_a).parent / "__pycache__"',
).replace('(_package / "__init__.py")', '(_package / "checks.cpython-311.pyc")')


@pytest.mark.parametrize(
    "code,planted",
    [(PLANT, "assignments/checks/__init__.py"),
     (PLANT_PYC, "assignments/__pycache__/checks.cpython-311.pyc")],
    ids=["package", "pyc"],
)  # fmt: skip
def test_a_module_planted_beside_the_graders_checks_voids_the_grade(tmp_path, code, planted):
    """Python would import a package checks/, or a .pyc in __pycache__, in place of checks.py."""
    kit_copy(tmp_path / "kit")
    copy = solved_copy(tmp_path / "copy")
    with open(copy / "flops.py", "a") as f:
        f.write(code)
    done = subprocess.run(
        [sys.executable, "kit/assignments/grade.py", "copy", "--only", "5", "--report", "r.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert done.returncode == 3 and planted in report["void"]


FORGED_VERDICT = """
import json as _json

_dumps = _json.dumps


def _forged(value, *args, **kwargs):  # the verdict goes out through json: mark every check passed
    if isinstance(value, dict) and "records" in value:
        value = dict(value, records=[dict(r, passed=True) for r in value["records"]])
    return _dumps(value, *args, **kwargs)


_json.dumps = _forged
_json.JSONEncoder.encode = lambda self, value: _forged(value)
"""


def test_code_that_rebinds_json_to_forge_its_verdict_fails_every_check(tmp_path):
    status, results = grade_unwritten_flops_with(tmp_path, FORGED_VERDICT)
    assert status == 1 and results[5]["earned"] == 0
    assert "tampered" in results[5]["message"], results[5]["message"]


def test_code_that_rewrites_the_graders_files_voids_its_grade_and_stops_a_loop(tmp_path):
    kit = kit_copy(tmp_path / "kit")
    copy = solved_copy(tmp_path / "copy")
    with open(copy / "flops.py", "a") as f:
        f.write(POISON)
    before = (kit / "assignments" / "checks.py").read_text()
    done = subprocess.run(
        [sys.executable, "kit/assignments/grade.py", "copy", "--only", "5", "--report", "r.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert done.returncode == 3, done.stdout + done.stderr
    assert "VOID" in done.stdout and report["earned"] == 0
    assert "assignments/checks.py" in report["void"]  # the kit's own, found the long way
    assert any("of the copy it was graded with" in p for p in report["void"])
    assert (kit / "assignments" / "checks.py").read_text() != before  # what the next run detects
    # graded again, an honest copy is graded by the kit it finds: restore it first, as told
    (kit / "assignments" / "checks.py").write_text(before)
    status, results = grade(solved_copy(tmp_path / "honest"), tmp_path / "g.json", "--only", "5")
    assert status == 0 and results[5]["status"] == "PASS"


def test_a_process_left_behind_neither_stalls_the_grader_nor_outlives_it(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    body = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
    body += "while True:\n    pass"  # the worker loops; the process it started holds the pipe
    make_student.replace_body(copy, "flops.py", "layer_flops", body)
    start = time.monotonic()
    status, results = grade(copy, tmp_path / "grade.json", "--only", "5", "--timeout", "3")
    assert time.monotonic() - start < 30
    assert status == 1 and "did not finish within 3 s" in results[5]["message"]


def _workers_of(pid: int) -> list[int]:
    """The grading workers grade.py `pid` started (its children running --worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or one that just ended
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and b"--worker" in command:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stopped_grader_stops_its_workers(tmp_path, signum):
    """Ctrl-C, a kill, a closed terminal: the workers, in sessions of their own, would not hear
    it, and would go on running a student's code."""
    import signal

    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, "flops.py", "layer_flops", "while True:\n    pass")
    grader = subprocess.Popen(
        [sys.executable, str(GRADE), str(copy), "--only", "5", "--timeout", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (workers := _workers_of(grader.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers, "no worker started within 60 s"
    grader.send_signal(getattr(signal, signum))
    assert grader.wait(timeout=30) == 128 + getattr(signal, signum)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, workers)), f"workers {workers} outlived the grader"


def test_a_pth_file_planted_in_a_site_folder_is_seen(tmp_path, monkeypatch):
    """A .pth file in site-packages runs at every start of Python, the grader's workers too."""
    import site

    import grade as grader

    kit, sites = tmp_path / "kit", tmp_path / "site-packages"
    (kit / "assignments").mkdir(parents=True), sites.mkdir()
    (kit / "assignments" / "checks.py").write_text("CHECKS = []\n")
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(sites)])
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(tmp_path / "user-site"))
    before = grader._kit_digest(kit)
    (sites / "zz_forge.pth").write_text("import os; os.environ['FORGED'] = '1'\n")
    assert grader._differences(before, grader._kit_digest(kit)) == [str(sites / "zz_forge.pth")]


def test_rebinding_a_builtin_the_checks_call_is_tampering(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    with open(copy / "rl_policy.py", "a") as f:
        f.write("\nimport builtins\n\nbuiltins.abs = lambda x: 0 * x\n")
    status, results = grade(copy, tmp_path / "grade.json", "--only", "4")
    assert status == 1 and results[4]["earned"] == 0
    assert "tampered" in results[4]["message"] and "builtins.abs" in results[4]["message"]


def test_what_a_students_exception_says_is_cut_short(tmp_path):
    """A report is not a way to carry the grader's files out: the text of a student's exception
    reaches it cut to a few hundred characters."""
    copy = solved_copy(tmp_path / "copy")
    body = "raise RuntimeError(open(__file__).read() * 20)"
    make_student.replace_body(copy, "flops.py", "layer_flops", body)
    status, results = grade(copy, tmp_path / "grade.json", "--only", "5")
    assert status == 1 and "RuntimeError" in results[5]["message"]
    assert "(cut)" in results[5]["message"]
    assert all(len(c["message"] or "") < 700 for c in results[5]["checks"])


def test_the_public_grader_gives_the_reference_its_public_points(tmp_path):
    status, results = grade(REPO, tmp_path / "grade.json", "--only", "3", "--public")
    public = sum(c.points for c in checks.ASSIGNMENTS[3].checks if not c.hidden)
    assert status == 0 and results[3]["status"] == "PASS"
    assert results[3]["earned"] == results[3]["possible"] == public


def test_gradescope_results_are_written_in_its_format(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, *mutants.MUTANTS["REINFORCE without a baseline"][:3])
    command = [sys.executable, str(GRADE), str(copy), "--only", "4", "5", "--report"]
    command += [str(tmp_path / "grade.json"), "--gradescope", str(tmp_path / "results.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    results = json.loads((tmp_path / "results.json").read_text())
    report = json.loads((tmp_path / "grade.json").read_text())
    assert results["score"] == report["earned"] == sum(t["score"] for t in results["tests"])
    possible = checks.ASSIGNMENTS[4].points + checks.ASSIGNMENTS[5].points  # hidden ones too
    assert sum(t["max_score"] for t in results["tests"]) == report["possible"] == possible
    assert any(t["visibility"] == "after_published" for t in results["tests"])
    for test in results["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output"}
        assert 0 <= test["score"] <= test["max_score"]
    failed = [t for t in results["tests"] if t["score"] < t["max_score"]]
    assert failed and "without a baseline" in failed[0]["output"]


# ----------------------------------------------------------------------------------------------
# Assignment 6: the own-method grade measures learning


RANDOM_OWN = '''
from skim import RandomOptions, RandomSkim


class MyMethod(RandomSkim):
    """A random skim submitted as an own method: it learns nothing."""

    def __init__(self, config, options=None, task=None):
        shares = ",".join(["1.0"] + ["0.6"] * (config.num_hidden_layers - 1))
        super().__init__(config, RandomOptions(keep_shares=shares, random_seed=7), task)
'''


FORGED_MEASURE = """
_honest_keywords_kept = _keywords_kept


def _keywords_kept(feats, exits, num_layers):  # a student's forgery: "my method keeps them all"
    if any("my_method" in arg for arg in sys.argv):
        return {"keywords_kept_per_layer": [1.0] * num_layers}
    return _honest_keywords_kept(feats, exits, num_layers)


"""


def test_a_new_file_that_would_stand_in_for_a_library_is_refused(tmp_path):
    """Assignment 6 runs the grader's train.py with the student's new files beside it: a
    numpy.py or tqdm.py of theirs would be imported in place of the real one (and could report
    any measurement), so such a name fails with a message, before anything runs."""
    copy = solved_copy(tmp_path / "copy")
    (copy / "tqdm.py").write_text('raise SystemExit("the student shadow module ran")\n')
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    r = results[6]
    assert status == 1 and r["earned"] == 0
    assert "tqdm.py has the name of the module tqdm" in r["message"], r["message"]


def test_a_copy_that_leaves_out_its_assignment_6_file_earns_nothing_on_it(tmp_path):
    """Assignment 6 is graded in the grader's own repository: a file the copy lacks must not
    bring the reference's answers in with it (ltp.py left out once earned 40 of 40)."""
    copy = solved_copy(tmp_path / "copy")
    for name in ("ltp.py", "transformer.py", "flops.py", "skim.py"):
        (copy / name).unlink()
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    r = results[6]
    assert status == 1 and r["earned"] == 0, r
    assert "Assignment 6: write" in json.dumps(r["checks"]), r["checks"]


ARGV_OWN = """
import os
import sys

import torch

import data
import synthetic
from skim import SkimStrategy


def draw():  # the grader's draw: in train.py's command line, or a regrade's in the environment
    argv = sys.argv
    if "--word-roles" in argv:
        return int(argv[argv.index("--word-roles") + 1])
    draws = os.environ.get("SKIMBERT_WORD_ROLES", "0,0,0").split(",")  # r1,r2,r3: one a seed
    return int(draws[int(argv[argv.index("--seed") + 1]) - 1]) if "--seed" in argv else 0


class MyMethod(SkimStrategy):
    layers = (1,)

    def __init__(self, config, options=None, task=None):
        super().__init__(config, options, task)
        positive, negative, _ = synthetic.word_roles(draw())
        vocab = list(data.SPECIAL_TOKENS) + list(synthetic.vocabulary("synthetic"))
        table = torch.zeros(config.vocab_size, dtype=torch.bool)
        table[[vocab.index(w) for w in positive + negative]] = True
        self.register_buffer("table", table, persistent=False)

    def decide(self, i, h, alive, ctx):
        ids = ctx.batch["input_ids"]
        if ctx.pruning:
            ids = ids.gather(1, ctx.positions.clamp(min=0))
        keep = self.table[ids] & (alive > 0)
        keep[:, 0] = alive[:, 0] > 0  # [CLS]
        return keep if ctx.pruning else keep.to(h.dtype)
"""


def test_an_own_method_that_reads_the_draw_from_its_command_line_finds_none(tmp_path):
    """It earned 40 of 40 when train.py got --word-roles N, and again from the environment of a
    regrade (these tests grade with SKIMBERT_WORD_ROLES set): a training is now handed the
    draw's sentences (--data-dir), never the draw nor the grader's variables, and the grader
    counts the keywords kept."""
    r = fails_to_choose(tmp_path, ARGV_OWN)
    assert any("sys.argv" in line for line in r["read"])


def test_the_lines_of_an_own_method_to_read_are_listed_under_its_grade(tmp_path):
    """The training process knows the draw of keywords (its command line, its run folder, its
    memory): what reads such places cannot be told from learning by numbers, so the report lists
    those lines for the instructor. A method that does nothing of the kind gets no list."""
    copy = solved_copy(tmp_path / "copy")
    (copy / "my_method.py").write_text(
        "import sys\n\nROLES = sys.argv[sys.argv.index('--word-roles') + 1]\n\n\n"
        "class MyMethod:  # not a SkimStrategy: the conformance suite stops it at once\n"
        "    pass\n"
    )
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    assert status == 1 and results[6]["read"] == [
        "my_method.py:3: the command line, which holds the draw of keywords; the draw or the "
        "keyword marks: ROLES = sys.argv[sys.argv.index('--word-roles') + 1]"
    ]
    scope = grade_module.gradescope({"assignments": [results[6]], "earned": 0, "passed": 0,
                                     "graded": 1})["tests"][-1]  # fmt: skip
    assert scope["visibility"] == "hidden" and scope["max_score"] == 0  # the instructor's eyes
    assert scope["output"] == results[6]["read"][0]
    for own in (RANDOM_OWN, WORD_TYPES_OWN):
        (copy / "my_method.py").write_text(own)
        assert grade_module.lines_to_read(copy) == []
    assert grade_module.lines_to_read(REPO) == []  # the reference LTP's bodies


def fails_to_choose(tmp_path, own: str) -> dict:
    """Grade assignment 6 of a solved copy with `own` as its my_method.py: it must fail the
    experiment's rule on the deciding words. Its report entry."""
    copy = solved_copy(tmp_path / "copy")
    (copy / "my_method.py").write_text(own)
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    r = results[6]
    assert status == 1 and r["status"] == "FAIL", r["message"]
    assert "does not keep the words that decide the label" in r["message"], r["message"]
    return r


def test_the_random_control_as_an_own_method_fails_assignment_6(tmp_path):
    copy = solved_copy(tmp_path / "copy")
    (copy / "my_method.py").write_text(RANDOM_OWN)  # the submission layout: picked up by itself
    # assignments 3 and 5 unwritten: assignment 6 is graded on their reference, so its
    # conformance points below stay whole (a mistake costs points once, where it is made)
    for path, function in (("skim.py", "skim_loss"), ("flops.py", "layer_flops")):
        make_student.replace_body(copy, path, function, 'raise NotImplementedError("later")')
    # and the copy's train.py forges the measurement: assignment 6 runs the grader's own
    # train.py, with only the student's marked bodies and new files put in, so it changes nothing
    text = (copy / "train.py").read_text()
    main = text.index('if __name__ == "__main__":')
    (copy / "train.py").write_text(text[:main] + FORGED_MEASURE + text[main:])
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    r = results[6]
    assert status == 1 and r["status"] == "FAIL", r["message"]
    assert "does not keep the words that decide the label" in r["message"], r["message"]
    conformance = sum(c["points"] for c in r["checks"] if c["passed"])
    assert conformance == r["possible"] - 20  # a random skim is a well-formed method


WORD_TYPES_OWN = '''
import hashlib

import torch

from skim import SkimStrategy


class MyMethod(SkimStrategy):
    """Learns nothing: keeps a fixed 30% of the word types (a hash of the token id, salt 61). Under
    the published keywords this set holds most of them, and it passed by luck; drawn anew, the
    keywords are rarely in it."""

    def __init__(self, config, options=None, task=None):
        super().__init__(config, options, task)
        self.layers = (config.num_hidden_layers - 1,)
        digest = lambda i: int(hashlib.sha256(f"61:{i}".encode()).hexdigest(), 16)  # noqa: E731
        kept = [digest(i) % 10**6 / 1e6 < 0.3 for i in range(config.vocab_size)]
        self.register_buffer("table", torch.tensor(kept))

    def decide(self, i, h, alive, ctx):
        ids = ctx.batch["input_ids"]
        if ctx.pruning:  # the surviving tokens' ids, on the packed grid
            ids = ids.gather(1, ctx.positions.clamp(min=0))
        keep = self.table[ids] & (alive > 0)
        keep[:, 0] = alive[:, 0] > 0  # [CLS]
        return keep if ctx.pruning else keep.to(h.dtype)
'''


def test_a_fixed_set_of_word_types_that_learned_nothing_fails_on_drawn_keywords(tmp_path):
    fails_to_choose(tmp_path, WORD_TYPES_OWN)


FORGING_OWN = (
    RANDOM_OWN
    + """

import sys

import evaluation

if any("my_method" in arg for arg in sys.argv):  # the method's runs, not the control's
    evaluation._keywords_kept = lambda feats, exits, num_layers: {
        "keywords_kept_per_layer": [1.0] * num_layers
    }
"""
)


REWRITING_OWN = (
    RANDOM_OWN
    + """

import sys
from pathlib import Path

# rewrites, on disk, the measure the next train.py beside it imports: the control's keywords 0
OLD = 'return {"keywords_kept_per_layer": [round(k, 4) for k in kept]}'
NEW = 'kept = [0.0] * len(kept) if "--keep-shares-from" in sys.argv else kept\\n    ' + OLD
if "--keep-shares-from" not in sys.argv and OLD in Path("evaluation.py").read_text():
    text = Path("evaluation.py").read_text().replace(OLD, NEW)
    Path("evaluation.py").write_text(text.replace("import numpy", "import sys\\nimport numpy", 1))
"""
)


REWRITES_THE_CONTROLS_COPY = """
from pathlib import Path

for copy in Path(__file__).resolve().parent.parent.glob("control-s*"):  # every token left at 0
    text = (copy / "report.py").read_text()
    text = text.replace('"exit_layers": exits}', '"exit_layers": [0] * len(exits)}')
    (copy / "report.py").write_text(text)
"""


SPOILING_OWN = (
    RANDOM_OWN
    + """

import sys
from pathlib import Path

# every label of the control's training sentences turned negative: a control that learns nothing
out = Path(sys.argv[sys.argv.index("--out-dir") + 1])
for file in out.parent.glob("control-sentences-*/synthetic/train.tsv"):
    file.write_text(file.read_text().replace("\\tpositive", "\\tnegative"))
"""
)


@pytest.mark.parametrize(
    "own,said",
    [(SPOILING_OWN, "the control's sentences changed while the method trained"),
     (RANDOM_OWN + REWRITES_THE_CONTROLS_COPY, "the control's copy of the repository changed")],
    ids=["its sentences", "its copy of the repository"],
)  # fmt: skip
def test_an_own_method_that_rewrites_what_its_control_reads_fails(tmp_path, own, said):
    copy = solved_copy(tmp_path / "copy")
    (copy / "my_method.py").write_text(own)
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    experiment = results[6]["checks"][-1]
    assert status == 1 and not experiment["passed"], experiment
    assert said in experiment["message"], experiment["message"]


LEAVES_A_PROCESS = """
import json, os, sys, time
from pathlib import Path

if "--out-dir" in sys.argv:  # a child that waits for train.py to end, then keeps every token
    out = Path(sys.argv[sys.argv.index("--out-dir") + 1]) / "results.json"
    parent = os.getpid()
    if os.fork() == 0:
        while os.getppid() == parent:
            time.sleep(0.05)
        results = json.loads(out.read_text())
        for row in results["case_study"]:
            row["exit_layers"] = [len(results["kept_per_layer"])] * len(row["exit_layers"])
        out.write_text(json.dumps(results))
        os._exit(0)
"""


def test_an_own_method_that_rewrites_what_measures_it_changes_nothing(tmp_path):
    """Two ways a random skim scored 40 of 40, at once: it rewrote evaluation.py on disk for
    the control that imports it next (each training now runs in a copy of its own), and left a
    child behind train.py that rewrote its results (killed now with train.py's process group).
    Either way open, it would pass."""
    fails_to_choose(tmp_path, REWRITING_OWN + LEAVES_A_PROCESS)


def test_an_own_method_that_rebinds_the_measure_earns_nothing_by_it(tmp_path):
    """The method runs inside the grader's train.py: rebinding the function that counts the
    keywords it kept is refused there, and the experiment fails."""
    copy = solved_copy(tmp_path / "copy")
    (copy / "my_method.py").write_text(FORGING_OWN)
    status, results = grade(copy, tmp_path / "grade.json", "--only", "6")
    r = results[6]
    assert status == 1 and r["status"] == "FAIL"
    experiment = r["checks"][-1]
    assert not experiment["passed"], experiment
    assert "rebinds evaluation._keywords_kept" in experiment["message"], experiment["message"]


def test_the_untouched_student_copys_own_tests_pass_skipping_by_assignment(tmp_path):
    out = tmp_path / "student"
    make_student.make_student(out)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/test_flops.py", "tests/test_skim.py", "tests/test_rl_policy.py"],
        cwd=out, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "failed" not in done.stdout.splitlines()[-1]
    for n, handout in ((1, "01_attention.md"), (2, "02_gumbel.md"), (5, "05_flops.md")):
        assert f"assignment {n} is not done yet (assignments/{handout})" in done.stdout
    # the selection a handout gives: the tests that call assignment 5's functions
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--assignment", "5"],
        cwd=out, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "deselected" in done.stdout.splitlines()[-1]


@pytest.mark.parametrize("name", list(mutants.RIGHT))
def test_another_right_solution_passes_the_students_own_tests_too(tmp_path, name):
    """The repository's tests that call a function must not fix how it is written either (a
    test that built a SkimOutput without exit_layer failed a right skim loss that read it)."""
    path, function, body = mutants.RIGHT[name]
    copy = solved_copy(tmp_path / "copy")
    make_student.replace_body(copy, path, function, body)
    number = mutants._assignment(path, function)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--assignment",
         str(number), "tests"],
        cwd=copy, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
