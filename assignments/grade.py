"""Grade a copy of the repository: run each assignment's checks on the code in that copy.

    python assignments/grade.py                  # grade this repository (the reference: full marks)
    python assignments/grade.py ~/alice          # grade a student's copy
    python assignments/grade.py ~/alice --only 2 3 --report alice.json
    python assignments/grade.py --list           # the assignments, their points and checks

One line per assignment: number, title, PASS or FAIL, points earned / possible and, on FAIL, the
first failed check with what went wrong. A JSON report goes to DIR/grade.json (or --report). The
exit status is 0 only when every graded assignment passes.

The checks are this script's own (assignments/checks.py beside it), never the graded copy's:
grade with your copy of the kit and a student cannot change what is checked. Each assignment
runs in its own Python process that imports the student's modules from DIR, so a module that
does not even import fails only the assignments that need it, and an endless loop fails only
its own assignment (after its timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent  # the grader's assignments/ folder, with checks.py
sys.path.insert(0, str(HERE))

import checks  # noqa: E402  (the grader's own checks, found through HERE)


def _worker(number: int, directory: Path, result_file: Path) -> None:
    """In the child process: run one assignment's checks, write their records as JSON. (torch, if
    the checks import it, runs one thread: OMP_NUM_THREADS=1, as several workers share the CPUs.)"""
    records = checks.run_assignment(number, directory)
    result_file.write_text(json.dumps(records))


def _failed_all(assignment, message: str) -> list[dict]:
    return [
        {"name": c.name, "points": c.points, "passed": False, "message": message, "seconds": None}
        for c in assignment.checks
    ]


def grade_one(number: int, directory: Path, timeout_s: float | None) -> dict:
    """Run one assignment's checks in a fresh process on `directory`; its report entry."""
    assignment = checks.ASSIGNMENTS[number]
    timeout_s = timeout_s or assignment.timeout_s
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but DIR's code
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, str(HERE / "grade.py"), "--worker", str(number)]
        command += [str(directory), "--result", str(result_file)]
        try:
            done = subprocess.run(
                command, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout_s
            )
            if result_file.is_file():
                records = json.loads(result_file.read_text())
            else:  # the process died before writing: show the end of what it said
                said = (done.stderr or done.stdout).strip().splitlines()
                last = said[-1] if said else "no output"
                records = _failed_all(
                    assignment, f"the checks crashed (exit status {done.returncode}): {last}"
                )
        except subprocess.TimeoutExpired:
            records = _failed_all(
                assignment,
                f"the checks did not finish within {timeout_s:g} s (an endless loop, or a very "
                f"slow step?) and were stopped",
            )
    earned = sum(r["points"] for r in records if r["passed"])
    failed = [r for r in records if not r["passed"]]
    return {
        "number": number,
        "title": assignment.title,
        "handout": assignment.handout,
        "functions": assignment.functions,
        "status": "FAIL" if failed else "PASS",
        "earned": earned,
        "possible": assignment.points,
        "message": f"{failed[0]['name']}: {failed[0]['message']}" if failed else None,
        "seconds": round(time.perf_counter() - start, 2),
        "checks": records,
    }


def grade(directory: Path, numbers: list[int], timeout_s=None, jobs: int = 1, echo=print) -> dict:
    """Grade `directory` on the given assignments; prints one line each (in order) and returns
    the report."""
    results = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for r in pool.map(lambda n: grade_one(n, directory, timeout_s), numbers):
            points = f"{r['earned']:>3}/{r['possible']}"
            line = f"{r['number']:>2}. {r['title']:<42} {r['status']}  {points:<8}"
            echo((line + (r["message"] or "")).rstrip())
            results.append(r)
    return {
        "directory": str(directory),
        "grader": str(HERE),
        "earned": sum(r["earned"] for r in results),
        "possible": sum(r["possible"] for r in results),
        "passed": sum(r["status"] == "PASS" for r in results),
        "graded": len(results),
        "assignments": results,
    }


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
        "--report", type=Path, help="where to write the JSON report (default: DIR/grade.json)"
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
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    directory = args.directory.resolve()

    if args.worker is not None:
        _worker(args.worker, directory, args.result)
        return 0
    if args.list:
        for a in checks.ASSIGNMENTS.values():
            functions = ", ".join(a.functions)
            print(f"{a.number:>2}. {a.title} ({a.points} points, {a.handout}): {functions}")
            for c in a.checks:
                print(f"      {c.points:>2}  {c.name}")
        return 0
    if not directory.is_dir():
        parser.error(f"{directory} is not a folder")
    numbers = sorted(args.only or checks.ASSIGNMENTS)
    unknown = [n for n in numbers if n not in checks.ASSIGNMENTS]
    if unknown:
        parser.error(f"no assignment {unknown[0]}; there are {sorted(checks.ASSIGNMENTS)}")

    print(f"grading {directory} (checks: {HERE / 'checks.py'})")
    report = grade(directory, numbers, args.timeout, args.jobs)
    report_path = args.report or directory / "grade.json"
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(
        f"total {report['earned']}/{report['possible']}: {report['passed']} of "
        f"{report['graded']} assignments pass. Report: {report_path}"
    )
    return 0 if report["passed"] == report["graded"] else 1


if __name__ == "__main__":
    sys.exit(main())
