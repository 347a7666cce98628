"""Grade a copy of the repository: run each assignment's checks on the code in that copy.

    python assignments/grade.py                  # grade this repository (the reference: full marks)
    python assignments/grade.py ~/alice          # grade a student's copy
    python assignments/grade.py ~/alice --only 2 3 --report alice.json
    python assignments/grade.py ~/alice --gradescope results.json   # Gradescope's format too
    python assignments/grade.py --list           # the assignments, their points and checks

One line per assignment: number, title, PASS or FAIL, points earned / possible and, on FAIL, the
first failed check with what went wrong. A JSON report goes to DIR/grade.json (or --report). The
exit status is 0 only when every graded assignment passes; 3 when the graded code changed the
grader's own files (the grade is void, and the kit must be restored before grading more).

The checks are this script's own (assignments/checks.py beside it), never the graded copy's:
grade with your copy of the kit and a student cannot change what is checked. The instructor's
kit (assignments/instructor/, which a student copy never holds) adds hidden checks and variants
(--variant 4b grades variant 4b in place of assignment 4); --public grades with the public
checks alone, as a student sees them.

Each assignment runs in its own Python process that imports the student's modules from DIR, so a
module that does not even import fails only the assignments that need it, and an endless loop
fails only its own assignment (after its timeout, which stops whatever it started too). The
workers run a private copy of the grader's files, made for each graded copy and deleted after;
the grader's own files are compared before and after. That process sends its verdicts back through
a pipe, with a secret it read before importing anything of the student's, and ends without
running exit hooks; points are counted here, from this grader's own table of checks. Code that
runs in the grading process can still, with effort, reach that pipe: for grades that count, run
the grader in a container and read what a submission does (assignments/instructor/README.md).

Assignment 6 grades LTP in the copy's ltp.py, or the student's own method: --strategy
FILE.py:Class, SKIMBERT_STRATEGY, or by default DIR/my_method.py:MyMethod when that file exists
(the submission layout of the instructor guide).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent  # the grader's assignments/ folder, with checks.py
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # the grader writes no .pyc into the kit: any found there is new

import checks  # noqa: E402  (the grader's own checks, found through HERE)
import make_student  # noqa: E402

OWN_METHOD = ("my_method.py", "MyMethod")  # where a submission puts its own method (assignment 6)


def _worker(key: str, directory: Path, result_fd: int) -> None:
    """In the child process: read the secret from stdin before any of the student's code runs,
    run one assignment's checks, send {secret, records} through the pipe, and end at once
    (os._exit: no atexit hook, no finaliser of the student's runs after the verdict)."""
    secret = sys.stdin.readline().strip()
    # The student's code may `import checks` to switch the checks off (checks.expect = ...): from
    # here on that name finds nothing of the grader's (its folder leaves the path, its module
    # leaves sys.modules), so it imports their own copy, or fails. Code that looks harder can
    # still reach the module: what it rebinds or rewrites is then found afterwards, and fails
    # every check.
    sys.modules.pop("checks")
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != HERE]
    # What sends the verdict is taken now, and the verdict of tampering written now: code that
    # rebinds json.dumps or os.write later reaches neither.
    write, end = os.write, os._exit
    names = [c.name for c in checks.find(key).checks]
    tampered = json.JSONEncoder().encode({"secret": secret, "records": [
        {"name": n, "passed": False, "message": TAMPERED} for n in names]}).encode()  # fmt: skip
    before = _fingerprint()
    records = checks.run_assignment(key, directory)
    changed = _changed(before, _fingerprint())
    if changed:
        name = changed[0].encode("ascii", "replace").replace(b'"', b"?").replace(b"\\", b"?")
        said = tampered.replace(b"@NAME@", name)
    else:  # nothing was rebound: json's encoder is json's own
        said = json.JSONEncoder().encode({"secret": secret, "records": records}).encode()
    while said:
        said = said[write(result_fd, said) :]
    end(0)


TAMPERED = (
    "the grader's checks, or what they call, were changed while they ran (@NAME@): the graded "
    "code tampered with them"
)


def _failed_all(assignment, message: str) -> list[dict]:
    return [
        {
            "name": c.name,
            "points": c.points,
            "hidden": c.hidden,
            "passed": False,
            "message": message,
            "seconds": None,
        }
        for c in assignment.checks
    ]


def _fingerprint() -> dict:
    """What the checks are made of: every name of checks.py and of the instructor's check files
    with the object it is bound to, and each function's code and defaults; and what they call
    or what sends their verdict: every name of Python's builtins, of math, os and json (its
    encoder too), of torch and torch.nn.functional, and every attribute a tensor finds.

    runs.fingerprint does the same for train.py; the grader cannot import it: in the worker,
    `runs` is the graded copy's module, which the student's code may have written."""
    import builtins
    import json.encoder

    import torch
    import torch.nn.functional

    ours = [checks, *(m for n, m in list(sys.modules.items()) if n.startswith("skimbert_instr"))]
    theirs = [builtins, math, os, json, json.encoder, json.encoder.JSONEncoder, torch,
              torch.nn.functional]  # fmt: skip
    seen = {}
    for space in [*ours, *theirs]:
        for name, value in list(vars(space).items()):
            if name == "STUDENT_DIR":  # set by run_assignment: the one name meant to change
                continue
            code = getattr(value, "__code__", None) if space in ours else None
            defaults = getattr(value, "__defaults__", None) if space in ours else None
            seen[(space.__name__, name)] = (value, code, defaults)
    for name in dir(torch.Tensor):  # what a tensor's attribute finds, inherited ones too
        seen[("torch.Tensor", name)] = (inspect.getattr_static(torch.Tensor, name),)
    for assignment in [*checks.ASSIGNMENTS.values(), *checks.VARIANTS.values()]:
        for c in assignment.checks:
            seen[(assignment.title, c.name)] = (c.run, c.run.__code__, c.points, c.hidden)
    return seen


def _changed(before: dict, after: dict) -> list[str]:
    """The names whose object (or code, or defaults) is not the very one it was, by identity (an
    object's own == could lie). Names added since do not count, nor a library function wrapped
    around the one it was: torch adds names, and wraps some, as it loads its parts (importing
    torch._dynamo wraps torch.manual_seed)."""
    return [
        ".".join(key)
        for key, was in before.items()
        if key not in after or any(_other(a, b) for a, b in zip(was, after[key]))
    ]


def _other(was, now) -> bool:
    """Is `now` another object than `was`, other than torch's own wrapper around it?"""
    if now is was:
        return False
    try:
        return not (_from_torch(now) and inspect.unwrap(now) is was)
    except Exception:  # a __wrapped__ that loops or raises: not a plain wrapper
        return True


def _from_torch(function) -> bool:
    """Was `function` written in torch's own files (torch._dynamo's wrappers are)?"""
    import torch

    code = getattr(function, "__code__", None)
    home = str(Path(torch.__file__).parent) + os.sep
    return code is not None and code.co_filename.startswith(home)


def _verdicts(assignment, said: bytes, secret: str) -> list[dict] | None:
    """The records the worker sent, checked against this grader's own list of checks: the same
    names in the same order, points from our table. None when they are not the worker's."""
    try:
        message = json.loads(said.decode())
        records = message["records"]
        ok = secrets.compare_digest(str(message.get("secret", "")), secret)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    names = [c.name for c in assignment.checks]
    if not ok or not isinstance(records, list) or [r.get("name") for r in records] != names:
        return None
    return [
        {
            "name": c.name,
            "points": c.points,
            "hidden": c.hidden,
            "passed": r.get("passed") is True,
            "message": None if r.get("passed") is True else _cut(str(r.get("message")), 1200),
            "note": _cut(str(r["note"]), 2000, keep="\n") if r.get("note") else None,
            "seconds": r.get("seconds") if isinstance(r.get("seconds"), (int, float)) else None,
        }
        for c, r in zip(assignment.checks, records)
    ]


def assemble(directory: Path, into: Path) -> None:
    """The folder assignment 6 is graded in: this grader's own repository, with the student's
    code put in — the bodies between their assignment-6 markers, and the .py files at the top of
    their copy that the repository does not have (an own method and its helpers). Everything else
    is the reference: the training loop, the random control and what they measure, whatever the
    copy's train.py or skim.py say, and the functions of assignments 1-5 (a mistake there costs
    points there, not here). An assignment-6 body the copy lacks stays a stub that raises, so a
    file left out earns nothing. Raises make_student.MarkerError when a marker is damaged."""
    make_student.make_student(into, only={6}, root=HERE.parent)  # 1-5 answered, 6 stubbed
    for path, regions in make_student.plan(HERE.parent, only={6}).items():
        theirs = directory / path
        if not theirs.is_file():
            continue  # not handed in: its assignment-6 bodies stay stubs
        text = theirs.read_text()
        lines = text.splitlines()
        bodies = {
            (r.number, r.function): lines[r.begin + 1 : r.end]
            for r in make_student.find_regions(text, path)
            if r.number == 6
        }
        mine = (into / path).read_text()
        (into / path).write_text(make_student.replace_bodies(mine, path, bodies))
    for file in directory.glob("*.py"):
        if file.is_file() and not file.is_symlink() and not (into / file.name).exists():
            if _shadows(file.stem):  # a numpy.py of theirs would stand in for numpy itself
                raise ValueError(
                    f"{file.name} has the name of the module {file.stem}, which the grader's "
                    f"code imports: rename it (e.g. my_{file.name})"
                )
            (into / file.name).write_bytes(file.read_bytes())


def _shadows(name: str) -> bool:
    """Is `name` a module of Python's or of the installed packages (torch, numpy, tqdm, ...)?"""
    import importlib.util

    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return True


def grade_one(key, directory: Path, timeout_s: float | None, env_extra=None, kit=HERE) -> dict:
    """Run one assignment's (or variant's) checks in a fresh process on `directory` (assignment
    6: on the folder `assemble` makes of it), with the checks of `kit` (an assignments/ folder:
    _private_kit's); its report entry."""
    assignment = checks.find(key)
    if assignment.number != 6:
        return _grade_in(key, directory, timeout_s, env_extra, kit)
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        graded = Path(tmp) / "graded"
        try:
            assemble(directory, graded)
            copies = _training_copies(graded)
        except (
            make_student.MarkerError,
            OSError,
            SyntaxError,
            UnicodeDecodeError,
            ValueError,
        ) as e:
            said = _cut(f"the copy could not be assembled for grading: {e}", 1200)
            records = _failed_all(assignment, said)
            return _entry(key, assignment, records, 0.0)
        digests = {seed: checks._digest(copies / f"control-s{seed}") for seed in checks.SEEDS}
        env = dict(env_extra or {}, SKIMBERT_TRAINING_COPIES=str(copies),
                   SKIMBERT_CONTROL_DIGESTS=json.dumps(digests))  # fmt: skip
        spec = env.get("SKIMBERT_STRATEGY", "")
        if spec.startswith(str(directory) + os.sep):  # the submission's own file, now in graded
            env["SKIMBERT_STRATEGY"] = str(graded) + spec[len(str(directory)) :]
        return {**_grade_in(key, graded, timeout_s, env, kit), "read": lines_to_read(directory)}


# What a skim method has no need to do, and what reading the draw of keywords or changing what
# measures it takes: assignment 6's report lists each such line of the student's own code, for
# the instructor to read before trusting the grade (a flag, not a verdict: Python is no sandbox).
READ_THESE = {
    "the command line, which holds the draw of keywords": r"\bargv\b|/proc\b|cmdline",
    "the draw or the keyword marks": r"word[_-]?roles|keyword_mask|keywords_kept",
    "the task's own generator": r"\bsynthetic\b",
    "the environment": r"\benvironb?\b|\bgetenv\b",
    "memory beyond its own objects": r"\bgc\b|\binspect\b|_getframe|\bf_(back|locals|globals)\b|"
    r"\bctypes\b|\bsys\.modules\b",
    "files": r"(?<![\w.])open\(|\b(io|os)\.open\b|\.(write|read)_(text|bytes)\(|\bshutil\b|"
    r"__file__|(results|config|eval)\.json|\bos\.(replace|rename|remove|unlink)\b",
    "code that outlives a call": r"\batexit\b|\bthreading\b|\b_thread\b|\bmultiprocessing\b|"
    r"\bsubprocess\b|\bos\.(system|fork|popen|exec\w*|spawn\w*)\b|\bsignal\b",
    "code by name": r"\b__import__\b|\bimportlib\b|(?<![\w.])(exec|eval|compile)\(|\bbuiltins\b|"
    r"__builtins__|\bgetattr\(",
}


def lines_to_read(directory: Path, limit: int = 20) -> list[str]:
    """Each line of the student's own code (the .py files at the top of their copy that the
    repository does not have, and their assignment-6 bodies) that does one of READ_THESE:
    'my_method.py:12: reads the command line, ...: import sys; roles = sys.argv[...]'."""
    import re

    mine = [f for f in sorted(Path(directory).glob("*.py")) if f.is_file() and not f.is_symlink()]
    sources = [(f.name, _text(f).splitlines(), None)
               for f in mine if not (HERE.parent / f.name).exists()]  # fmt: skip
    for path, regions in make_student.plan(HERE.parent, only={6}).items():
        if (Path(directory) / path).is_file() and not (Path(directory) / path).is_symlink():
            text = _text(Path(directory) / path)
            regions = make_student.find_regions(text, path)
            spans = [(r.begin, r.end) for r in regions if r.number == 6]
            sources.append((path, text.splitlines(), spans))
    found = []
    for name, lines, spans in sources:
        for i, line in enumerate(lines):
            if spans is not None and not any(b < i < e for b, e in spans):
                continue
            does = [what for what, pattern in READ_THESE.items() if re.search(pattern, line)]
            if does:
                found.append(_cut(f"{name}:{i + 1}: {'; '.join(does)}: {line.strip()}", 240))
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


def _text(file: Path, limit: int = 1 << 20) -> str:
    """A student's file as text, for reading only: at most `limit` bytes, '' when unreadable."""
    try:
        with open(file, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def _training_copies(graded: Path) -> Path:
    """A folder of its own for each training of assignment 6's experiment, made before any of the
    student's code runs: method-sN, a copy of `graded`, and control-sN, the grader's repository
    without a file of the student's. So a method that rewrites the files it runs beside (say
    evaluation.py, which the next process would import) changes no other training, and no
    module of the student's (one named as a package torch looks for) runs in a control."""
    copies = graded.parent / "copies"
    assemble(graded.parent / "nothing", graded.parent / "reference")  # no submission: stubs for 6
    for seed in checks.SEEDS:
        shutil.copytree(graded, copies / f"method-s{seed}", symlinks=True)
        shutil.copytree(graded.parent / "reference", copies / f"control-s{seed}", symlinks=True)
    shutil.rmtree(graded.parent / "reference")
    return copies


def _grade_in(key, directory: Path, timeout_s: float | None, env_extra=None, kit=HERE) -> dict:
    """Run one assignment's checks in a fresh process on `directory`; its report entry."""
    assignment = checks.find(key)
    timeout_s = timeout_s or assignment.timeout_s
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but DIR's code
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(PYTHONNOUSERSITE="1")  # no .pth file of the user's site runs in the worker
    env.update(env_extra or {})
    start = time.perf_counter()
    if INTERRUPTED.is_set():
        return _entry(key, assignment, _failed_all(assignment, "grading was interrupted"), 0.0)
    secret = secrets.token_hex(16)
    command = [sys.executable, str(kit / "grade.py"), "--worker", str(key), str(directory)]
    if not _instructor_loaded():  # --public here: the worker loads no hidden check either
        command += ["--public"]
    records, said = None, b""
    with tempfile.TemporaryFile() as output:  # its printing, on disk: only the tail is read
        read_end, write_end = os.pipe()
        try:
            # A session of its own: whatever it starts is stopped with it (_stop)
            child = subprocess.Popen(
                [*command, "--result-fd", str(write_end)], cwd=directory, env=env,
                stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                pass_fds=(write_end,), start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(write_end)  # the child holds its own copy: EOF here when it ends
        LIVE.add(child.pid)
        reader = _Reader(read_end)
        try:
            child.communicate((secret + "\n").encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            records = _failed_all(
                assignment,
                f"the checks did not finish within {timeout_s:g} s (an endless loop, or a very "
                f"slow step?) and were stopped",
            )
        _stop(child)
        said = reader.result()
        if records is None:
            records = _verdicts(assignment, said, secret) or _failed_all(
                assignment,
                f"the checks crashed (exit status {child.returncode}) or sent no verdict: "
                f"{_last_line(output)}",
            )
    return _entry(key, assignment, records, time.perf_counter() - start)


def _instructor_loaded() -> bool:
    """Did this grader register the instructor's hidden checks or variants?"""
    hidden = any(c.hidden for a in checks.ASSIGNMENTS.values() for c in a.checks)
    return hidden or bool(checks.VARIANTS)


LIVE: set[int] = set()  # the workers running now (each the leader of its process group)
INTERRUPTED = threading.Event()  # set on Ctrl-C or a kill: no worker starts after it


def _stop(child: subprocess.Popen) -> None:
    """End the worker and everything it started (its session's process group), at once."""
    _kill_group(child.pid)
    child.wait()
    LIVE.discard(child.pid)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # all of it ended already


def _interrupted(signum, frame) -> None:
    """Ctrl-C or a kill: the workers, in sessions of their own, hear neither; stop them too."""
    INTERRUPTED.set()
    for pid in list(LIVE):
        _kill_group(pid)
    raise SystemExit(128 + signum)


class _Reader:
    """Everything written to the result pipe until its last writer closes it (at most 16 MiB), read
    in a thread. A process that escaped _stop and holds the pipe open (it left the worker's
    session) is not waited for beyond a few seconds: the verdict is then missing."""

    def __init__(self, fd: int):
        self.said = b""
        self.thread = threading.Thread(target=self._read, args=(fd,), daemon=True)
        self.thread.start()

    def _read(self, fd: int) -> None:
        chunks, size = [], 0
        with os.fdopen(fd, "rb") as pipe:
            while chunk := pipe.read(65536):
                size += len(chunk)
                if size > 16 << 20:
                    return
                chunks.append(chunk)
        self.said = b"".join(chunks)

    def result(self) -> bytes:
        self.thread.join(timeout=5)
        return b"" if self.thread.is_alive() else self.said


def _last_line(output) -> str:
    """The last line the worker printed (from the last 4 KiB of its output), at most 300 chars."""
    output.seek(max(0, output.seek(0, os.SEEK_END) - 4096))
    lines = output.read().decode(errors="replace").strip().splitlines()
    return _cut(lines[-1] if lines else "no output", 300)


def _cut(text: str, limit: int, keep: str = "") -> str:
    """`text` as one printable line (or lines, where `keep` is "\n"), cut to `limit` characters:
    a message that quotes pages of anything is cut short, and a newline, carriage return or
    terminal escape in a student's exception text is shown escaped (\n, \x1b), so that it
    cannot print a line of the report of its own ("  3. skim loss  PASS") or hide the real one."""
    text = "".join(c if c.isprintable() or c in keep else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 12] + " … (cut)"


def _entry(key, assignment, records: list[dict], seconds: float) -> dict:
    """One assignment's report entry from its checks' records."""
    earned = sum(r["points"] for r in records if r["passed"])
    failed = [r for r in records if not r["passed"]]
    return {
        "number": assignment.number,
        "variant": None if isinstance(key, int) or str(key).isdigit() else str(key),
        "title": assignment.title,
        "handout": assignment.handout,
        "functions": assignment.functions,
        "status": "FAIL" if failed else "PASS",
        "earned": earned,
        "possible": assignment.points,
        "message": f"{failed[0]['name']}: {failed[0]['message']}" if failed else None,
        "seconds": round(seconds, 2),
        "checks": records,
    }


def _grade_safely(key, directory: Path, timeout_s, env, kit) -> dict:
    """grade_one; should the grader's own steps fail on a submission (a file it cannot read, a
    folder its code keeps writing to), that assignment fails with the reason, and the others
    are still graded and reported."""
    try:
        return grade_one(key, directory, timeout_s, env, kit)
    except Exception as e:  # noqa: BLE001 (any failure here is the submission's verdict)
        assignment = checks.find(key)
        said = _cut(f"grading failed: {type(e).__name__}: {e}", 1200)
        return _entry(key, assignment, _failed_all(assignment, said), 0.0)


def grade(directory: Path, keys: list, timeout_s=None, jobs: int = 1, echo=print, env=None) -> dict:
    """Grade `directory` on the given assignments (numbers) or variants (keys such as "4b");
    prints one line each (in order) and returns the report."""
    results = []
    with _private_kit() as (kit, changes):
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for r in pool.map(lambda k: _grade_safely(k, directory, timeout_s, env, kit), keys):
                points = f"{r['earned']:>3}/{r['possible']}"
                label = f"{r['number']}{'' if r['variant'] is None else ' (' + r['variant'] + ')'}"
                line = f"{label:>6}. {r['title']:<50} {r['status']}  {points:<8}"
                echo((line + (r["message"] or "")).rstrip())
                for said in r.get("read", []):  # assignment 6: what to read before trusting it
                    echo(f"        read: {said}")
                results.append(r)
        changed = changes()
    if changed:  # the graded code wrote into the grader's files: its grade is void
        message = (
            f"the graded code changed the grader's files ({', '.join(changed[:3])}), so nothing "
            f"it earned counts. Grader: restore the kit (`git checkout -- .` in {HERE.parent}, "
            "say) before you grade another copy"
        )
        echo(f"VOID: {message}")
        results = [_voided(r, message) for r in results]
    return {
        "directory": str(directory),
        "grader": str(HERE),
        "earned": sum(r["earned"] for r in results),
        "possible": sum(r["possible"] for r in results),
        "passed": sum(r["status"] == "PASS" for r in results),
        "graded": len(results),
        "void": changed,
        "assignments": results,
    }


def _voided(entry: dict, message: str) -> dict:
    """A report entry with every check failed, for `message`."""
    records = [dict(c, passed=False, message=message) for c in entry["checks"]]
    assignment = checks.find(entry["variant"] or entry["number"])
    return _entry(entry["variant"] or entry["number"], assignment, records, entry["seconds"])


@contextlib.contextmanager
def _private_kit():
    """A copy of this grader's repository (its checks, the instructor's kit, the code assignment 6
    trains with) for the workers of one graded copy, deleted after: code of theirs that rewrites
    "the grader's" checks.py finds this copy. Yields (its assignments/ folder, a function that
    lists the files changed since, here and in the copy). What the check cannot stop, code that
    finds this grader's own folder, it finds: grade.py then voids the grade (see `grade`)."""
    root = HERE.parent
    before = _kit_digest(root)
    with tempfile.TemporaryDirectory(prefix="skimbert-kit-", ignore_cleanup_errors=True) as tmp:
        copy = Path(tmp) / "kit"
        for path in _kit_paths(root):
            (copy / path).parent.mkdir(parents=True, exist_ok=True)
            (copy / path).write_bytes((root / path).read_bytes())
        copied = _kit_digest(copy, sites=False)

        def unchanged() -> list[str]:
            here = _differences(before, _kit_digest(root))
            there = _differences(copied, _kit_digest(copy, sites=False))
            return here + [f"{p} (of the copy it was graded with)" for p in there]

        yield copy / HERE.name, unchanged


def _kit_paths(root: Path) -> list[str]:
    """The grader's files: the repository's (as a student copy would take them) and the
    instructor's kit."""
    paths = set(make_student.repository_files(root)) | set(make_student.instructor_files(root))
    return sorted(paths)


CODE = (".py", ".pyc", ".pth", ".so")  # what Python may run: a planted one counts wherever it is
NOT_KIT = {".git", "runs", ".venv", "venv", ".pytest_cache", ".ruff_cache"}  # not searched


def _kit_digest(root: Path, sites: bool = True) -> dict[str, str]:
    """sha256 of each file Python may run under `root` (__pycache__ and new packages included:
    a planted checks/__init__.py or .pyc would be imported in place of checks.py), Gradescope's
    scripts, and the .pth files of the site folders, which run at every start of Python."""
    import site

    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in NOT_KIT]
        files += [Path(folder, n) for n in names if n.endswith(CODE) or "gradescope" in folder]
    folders = [*site.getsitepackages(), site.getusersitepackages()] if sites else []
    files += [p for s in folders if Path(s).is_dir() for p in Path(s).glob("*.pth")]
    digest = {}
    for file in files:
        name = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        if file.is_symlink() or not file.is_file():
            digest[name] = "link" if file.is_symlink() else "not a file"
        else:
            digest[name] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digest


def _differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The paths added, removed or changed between two digests."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def gradescope(report: dict) -> dict:
    """The report in Gradescope's autograder format (results.json: score, tests with name,
    score, max_score, output), one test per check."""
    tests = []
    for a in report["assignments"]:
        tag = f"{a['number']}" + (f" ({a['variant']})" if a["variant"] else "")
        for c in a["checks"]:
            tests.append(
                {
                    "name": f"{tag}. {a['title']}: {c['name']}",
                    "score": c["points"] if c["passed"] else 0,
                    "max_score": c["points"],
                    "output": "passed" if c["passed"] else c["message"],
                    "visibility": "after_published" if c["hidden"] else "visible",
                }
            )
        if a.get("read"):  # for the instructor's eyes only: no points, never shown to students
            tests.append({"name": f"{tag}. {a['title']}: lines of the student's code to read",
                          "score": 0, "max_score": 0, "output": "\n".join(a["read"]),
                          "visibility": "hidden"})  # fmt: skip
    return {
        "score": report["earned"],
        "output": f"{report['passed']} of {report['graded']} assignments pass",
        "tests": tests,
    }


def _write(path: Path, value: dict) -> None:
    """JSON to `path`, through a temporary file and a rename (never half a report)."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise SystemExit(f"error: cannot write {path}: {e.strerror}") from None


def own_method(directory: Path, given: str | None) -> str | None:
    """Which method assignment 6 grades: --strategy, else SKIMBERT_STRATEGY, else the
    submission's my_method.py:MyMethod when it exists; None: LTP in the copy's ltp.py."""
    if given or os.environ.get("SKIMBERT_STRATEGY"):
        return given or os.environ["SKIMBERT_STRATEGY"]
    file, name = OWN_METHOD
    return f"{directory / file}:{name}" if (directory / file).is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Grade a copy of the repository with the checks of assignments/checks.py."
    )
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=HERE.parent,
        help="the copy to grade (default: the repository this script is in)",
    )
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="grade these only")
    parser.add_argument(
        "--variant",
        nargs="+",
        default=[],
        metavar="KEY",
        help="grade these variants (instructor's kit, e.g. 4b) in place of their assignments",
    )
    parser.add_argument(
        "--public", action="store_true", help="the public checks only, as a student's grader"
    )
    parser.add_argument(
        "--strategy",
        metavar="FILE.py:Class",
        help="assignment 6: the student's own method (default: my_method.py:MyMethod in the "
        "graded folder when it exists, else LTP in its ltp.py)",
    )
    parser.add_argument(
        "--report", type=Path, help="where to write the JSON report (default: DIR/grade.json)"
    )
    parser.add_argument(
        "--gradescope", type=Path, metavar="PATH", help="also write Gradescope's results.json"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds allowed for each assignment's checks (default: the assignment's own, "
        "usually 120)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="assignments graded at once, one process each (default: up to 4)",
    )
    parser.add_argument("--list", action="store_true", help="list the assignments and stop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    directory = args.directory.resolve()
    if not args.public:
        checks.load_instructor_checks()

    if args.worker is not None:
        _worker(args.worker, directory, args.result_fd)
        return 0
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, a closed terminal
        signal.signal(signum, _interrupted)
    if args.list:
        for a in [*checks.ASSIGNMENTS.values(), *checks.VARIANTS.items()]:
            key, a = a if isinstance(a, tuple) else (str(a.number), a)
            functions = ", ".join(a.functions)
            print(f"{key:>3}. {a.title} ({a.points} points, {a.handout}): {functions}")
            for c in a.checks:
                print(f"      {c.points:>2}  {c.name}{'  (hidden)' if c.hidden else ''}")
        return 0
    if not directory.is_dir():
        parser.error(f"{directory} is not a folder")
    unknown = [k for k in args.variant if k not in checks.VARIANTS]
    if unknown:
        known = ", ".join(checks.VARIANTS) or "none: they are in the instructor's kit"
        parser.error(f"no variant {unknown[0]}; the variants are {known}")
    numbers = sorted(args.only or checks.ASSIGNMENTS)
    bad = [n for n in numbers if n not in checks.ASSIGNMENTS]
    if bad:
        parser.error(f"no assignment {bad[0]}; there are {sorted(checks.ASSIGNMENTS)}")
    replaced = {checks.VARIANTS[k].number: k for k in args.variant}
    keys = [replaced.get(n, n) for n in numbers]
    if args.variant and args.only is None:
        keys = list(replaced.values())
    strategy = own_method(directory, args.strategy)
    env = {"SKIMBERT_STRATEGY": strategy} if strategy else {}

    for flag, path in (("--report", args.report), ("--gradescope", args.gradescope)):
        if path is not None and path.is_dir():  # found now, not after minutes of grading
            parser.error(f"{flag} {path} is a folder: give a file, e.g. {path / 'grade.json'}")
    print(f"grading {directory} (checks: {HERE / 'checks.py'})")
    if strategy and 6 in numbers:
        print(f"assignment 6 grades {strategy}")
    report = grade(directory, keys, args.timeout, args.jobs, env=env)
    report_path = args.report or directory / "grade.json"
    _write(report_path, report)
    if args.gradescope:
        _write(args.gradescope, gradescope(report))
    print(
        f"total {report['earned']}/{report['possible']}: {report['passed']} of "
        f"{report['graded']} assignments pass. Report: {report_path}"
    )
    if report["void"]:
        return 3  # a loop over submissions stops here: the kit must be restored first
    return 0 if report["passed"] == report["graded"] else 1


if __name__ == "__main__":
    sys.exit(main())
