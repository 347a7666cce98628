"""Make the student copy of the repository: every marked reference solution becomes a stub.

    python assignments/make_student.py OUT              # stub every assignment
    python assignments/make_student.py OUT --only 2 3   # stub assignments 2 and 3, keep the rest

The reference solutions live in the real code, inside the function they solve, between two marker
comment lines (the signature and the docstring stay outside, and are kept):

    def gumbel_keep(logits, tau):
        '''...the docstring, which the student gets...'''
        # ASSIGNMENT 2 BEGIN: straight-through Gumbel-softmax (assignments/02_gumbel.md)
        ...the reference body...
        # ASSIGNMENT 2 END

In the copy the body between the markers becomes one `raise NotImplementedError(...)` that names
the assignment and its handout; the markers stay, so the student sees where to write. Everything
else is copied unchanged, so imports, other modules and their tests keep working.

What is copied: the files git tracks in this repository (their working-tree contents), or every
file when the repository is not a git checkout (a student copy itself); never .git/, runs/ or
caches, and never the instructor's kit (assignments/instructor/: the guide with its answers, the
known-wrong solutions and their tests, the hidden checks, the variants and their references).
OUT must not exist yet, or be an empty folder. Once written, the copy is searched for every code
line of the stubbed reference solutions (`leaks`); a line found there stops with an error, so a
copy that would hand out an answer is never finished.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shutil
import subprocess
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository this script belongs to
LINE_LENGTH = 100  # ruff.toml: a stub longer than this is split over three lines, as ruff would

BEGIN = re.compile(
    r"^(?P<indent>[ \t]*)# ASSIGNMENT (?P<number>\d+) BEGIN: (?P<title>.+?) "
    r"\((?P<handout>assignments/[^()\s]+\.md)\)\s*$"
)
END = re.compile(r"^(?P<indent>[ \t]*)# ASSIGNMENT (?P<number>\d+) END\s*$")
ANY_MARKER = re.compile(r"^\s*# ASSIGNMENT\b")

SKIPPED_DIRS = {".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv"}
INSTRUCTOR = "assignments/instructor/"  # the instructor's kit: never in a student copy
SKIPPED_SUFFIXES = (".pyc", ".pyo")


class MarkerError(Exception):
    """A marker line is malformed, unmatched, or not inside a function body."""


@dataclass
class Region:
    """One marked reference solution: lines begin..end (0-based, the two markers included)."""

    path: str  # relative to the repository, e.g. "skim.py"
    function: str  # qualified name inside the module, e.g. "SelfAttention._eager"
    number: int
    title: str
    handout: str  # e.g. "assignments/02_gumbel.md"
    begin: int  # line index of the BEGIN marker
    end: int  # line index of the END marker
    indent: str  # indentation of the markers, which is that of the body

    @property
    def qualified(self) -> str:
        """module.function, e.g. "transformer.SelfAttention._eager"."""
        return f"{self.path[:-3].replace('/', '.')}.{self.function}"


# ----------------------------------------------------------------------------------------------
# Finding the marked regions


def _functions(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function, 1-based as in ast."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")

    visit(tree, "")
    return found


def _comment_lines(text: str) -> dict[int, str]:
    """Line index -> line, for the lines that hold only a comment (so marker-like text inside a
    string or docstring is never taken for a marker)."""
    lines = text.splitlines()
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        row, col = token.start
        if token.type == tokenize.COMMENT and not lines[row - 1][:col].strip():
            found[row - 1] = lines[row - 1]
    return found


def find_regions(text: str, path: str) -> list[Region]:
    """The marked regions of one file's text, in order. Raises MarkerError on a bad marker."""
    if "# ASSIGNMENT" not in text:
        return []
    functions = _functions(ast.parse(text, filename=path))
    regions, open_begin = [], None
    for i, line in sorted(_comment_lines(text).items()):
        if not ANY_MARKER.match(line):
            continue
        where = f"{path}:{i + 1}"
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_begin is not None:
                raise MarkerError(f"{where}: BEGIN inside the region begun at line {open_begin[0]}")
            open_begin = (i + 1, begin)
        elif end:
            if open_begin is None:
                raise MarkerError(f"{where}: END without a BEGIN")
            start, begin = open_begin
            if end["number"] != begin["number"] or end["indent"] != begin["indent"]:
                raise MarkerError(
                    f"{where}: END of assignment {end['number']} does not match the BEGIN of "
                    f"assignment {begin['number']} at line {start} (number and indentation)"
                )
            # the innermost function whose body holds the BEGIN marker (comments are not in the
            # AST; a function's last line is its last statement, which is inside the region)
            inside = [f for f in functions if f[0] < start <= f[1]]
            if not inside:
                raise MarkerError(f"{path}:{start}: a marked region must lie in a function body")
            function = max(inside, key=lambda f: f[0])[2]
            regions.append(
                Region(
                    path,
                    function,
                    int(begin["number"]),
                    begin["title"],
                    begin["handout"],
                    start - 1,
                    i,
                    begin["indent"],
                )
            )
            open_begin = None
        else:
            raise MarkerError(
                f"{where}: not a marker line; write '# ASSIGNMENT N BEGIN: title "
                f"(assignments/0N_name.md)' or '# ASSIGNMENT N END'"
            )
    if open_begin is not None:
        raise MarkerError(f"{path}:{open_begin[0]}: BEGIN without an END")
    return regions


# ----------------------------------------------------------------------------------------------
# Replacing a region's body


def stub_body(region: Region) -> list[str]:
    """The lines that replace a reference body: raise NotImplementedError, naming the handout."""
    name = region.function.rsplit(".", 1)[-1]
    message = f"Assignment {region.number}: write {name}, see {region.handout}"
    assert '"' not in message and "\\" not in message, f"cannot quote {message!r}"
    line = f'{region.indent}raise NotImplementedError("{message}")'
    if len(line) <= LINE_LENGTH:
        return [line]
    return [
        f"{region.indent}raise NotImplementedError(",
        f'{region.indent}    "{message}"',
        f"{region.indent})",
    ]


def replace_bodies(text: str, path: str, bodies: dict[tuple[int, str], list[str]]) -> str:
    """text with the body of each region (number, function) in `bodies` replaced by those lines
    (already indented). The markers stay. The result must still parse."""
    lines = text.splitlines()
    for region in reversed(find_regions(text, path)):  # from the bottom: indices stay valid
        key = (region.number, region.function)
        if key in bodies:
            lines[region.begin + 1 : region.end] = bodies[key]
    new = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    ast.parse(new, filename=path)  # a SyntaxError here is a bug in a body given to us
    return new


def replace_body(root: Path, path: str, function: str, body: str) -> None:
    """Write `body` (Python source; common indentation is removed) into the marked region of
    `function` in root/path, in place. For instructors and tests: put a solution or a known-wrong
    body into a student copy."""
    file = Path(root) / path
    text = file.read_text()
    matches = [r for r in find_regions(text, path) if r.function == function]
    if len(matches) != 1:
        raise MarkerError(f"{path}: {len(matches)} marked regions in function {function}")
    region = matches[0]
    source = textwrap.dedent(body).strip("\n").split("\n")
    lines = [region.indent + line if line.strip() else "" for line in source]
    file.write_text(replace_bodies(text, path, {(region.number, function): lines}))


# ----------------------------------------------------------------------------------------------
# Copying the repository


def repository_files(root: Path) -> list[str]:
    """Paths (relative, with /) of the files to copy: git's tracked files when root is the top of
    a git checkout, else every file; without .git/, runs/ and caches."""
    try:
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tracked = Path(top).resolve() == root.resolve()
    except (OSError, subprocess.CalledProcessError):
        tracked = False
    if tracked:
        listing = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, text=True, check=True
        ).stdout
        paths = [p for p in listing.split("\0") if p]
    else:
        paths = [p.relative_to(root).as_posix() for p in root.rglob("*")]
    return sorted(
        p
        for p in paths
        if (root / p).is_file()  # a tracked file deleted in the working tree is skipped
        and not (set(Path(p).parts[:-1]) & SKIPPED_DIRS)
        and not p.startswith(INSTRUCTOR)
        and not p.endswith(SKIPPED_SUFFIXES)
    )


def instructor_files(root: Path) -> list[str]:
    """The files of the instructor's kit that a student copy leaves out."""
    folder = root / INSTRUCTOR
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not (set(p.relative_to(root).parts) & SKIPPED_DIRS)
    )


def code_lines(root: Path, regions: dict[str, list[Region]]) -> dict[str, str]:
    """Each code line of the marked reference bodies, normalised (`_normal`) -> where it is.
    Comments and blank lines are left out, and so is a line the project's code also writes
    outside every marked region (an idiom such as `with torch.no_grad():` or `return {`): such a
    line tells nothing of the answer."""
    inside, outside = {}, set()
    for path in repository_files(root):
        if not path.endswith(".py") or path.startswith(INSTRUCTOR) or path.startswith("tests/"):
            continue
        lines = (root / path).read_text().splitlines()
        marked = set()
        for r in regions.get(path, []) if path in regions else find_regions("\n".join(lines), path):
            marked.update(range(r.begin, r.end + 1))
        for i, line in enumerate(lines):
            code = _normal(line)
            if not code:
                continue
            if i in marked and path in regions:
                inside.setdefault(code, f"{path}:{i + 1}")
            elif i not in marked:
                outside.add(code)
    return {code: where for code, where in inside.items() if code not in outside}


def _normal(line: str) -> str:
    """A line of code without its comment and indentation, spaces squeezed and the typographic
    minus and times written as ASCII (a hint written with them still gives the code away)."""
    code = line.split("  #")[0].strip()
    if code.startswith("#"):
        return ""
    code = code.replace("\u2212", "-").replace("\u00d7", "*")
    return " ".join(code.split())


def leaks(out: Path, lines: dict[str, str]) -> list[str]:
    """Every place in the text files under `out` that holds one of `lines` (code_lines):
    'file: line (from where)'."""
    found = []
    for file in sorted(Path(out).rglob("*")):
        if not file.is_file() or file.suffix in SKIPPED_SUFFIXES:
            continue
        try:
            text = file.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # not text
        normal = "\n".join(_normal(line) for line in text.splitlines())
        for code, where in lines.items():
            if code in normal:
                found.append(
                    f"{file.relative_to(out).as_posix()}: {code!r} (the answer at {where})"
                )
    return found


def plan(root: Path = REPO, only: set[int] | None = None) -> dict[str, list[Region]]:
    """The regions to stub, by file: those of `only`, or all. Checks every marker and that each
    handout exists before anything is written."""
    regions = {}
    for path in repository_files(root):
        if path.endswith(".py"):
            found = find_regions((root / path).read_text(), path)
            found = [r for r in found if only is None or r.number in only]
            for r in found:
                if not (root / r.handout).is_file():
                    raise MarkerError(f"{path}:{r.begin + 1}: the handout {r.handout} is missing")
            if found:
                regions[path] = found
    missing = sorted((only or set()) - {r.number for rs in regions.values() for r in rs})
    if missing:
        raise MarkerError(f"no marked region for assignment(s) {', '.join(map(str, missing))}")
    return regions


def make_student(out: Path, only: set[int] | None = None, root: Path = REPO) -> list[Region]:
    """Copy root to out with the marked regions stubbed (those of `only`, or all); returns the
    stubbed regions. Refuses an out that exists and is not an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} already exists and is not an empty folder; give a new path, so that nothing "
            f"of yours is overwritten"
        )
    regions = plan(root, only)
    for path in repository_files(root):
        if path.startswith(INSTRUCTOR):
            continue
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, target)  # keeps the mode: scripts stay executable
        if path in regions:
            bodies = {(r.number, r.function): stub_body(r) for r in regions[path]}
            target.write_text(replace_bodies((root / path).read_text(), path, bodies))
    found = leaks(out, code_lines(root, regions))
    if found:
        raise MarkerError(
            f"the copy in {out} still holds {len(found)} line(s) of the answers; delete it, "
            "rewrite these places (describe the mistake, not the fix) and run again:\n  "
            + "\n  ".join(found)
        )
    return sorted(
        (r for rs in regions.values() for r in rs), key=lambda r: (r.number, r.path, r.begin)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Copy the repository with each assignment's reference solution replaced by "
        "a stub that raises NotImplementedError.",
    )
    parser.add_argument("out", type=Path, help="new (or empty) folder for the student copy")
    parser.add_argument(
        "--only",
        type=int,
        nargs="+",
        metavar="N",
        help="stub these assignments only; the others keep their reference solution",
    )
    args = parser.parse_args(argv)
    try:
        stubbed = make_student(args.out, set(args.only) if args.only else None)
    except (FileExistsError, MarkerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in stubbed:
        print(
            f"stubbed assignment {r.number}: {r.path} {r.function} "
            f"(lines {r.begin + 1}-{r.end + 1}, {r.handout})"
        )
    left_out = instructor_files(REPO)
    if left_out:
        print(
            f"left out the instructor's kit ({len(left_out)} files in {INSTRUCTOR}: the guide, "
            "known-wrong solutions, hidden checks, variants)"
        )
    print("searched the copy for every code line of the reference solutions: none found")
    found = sorted({r.number for r in stubbed})
    print(
        f"student copy in {args.out}: {len(stubbed)} stubs for assignments "
        f"{', '.join(map(str, found))}. Grade it with: python assignments/grade.py {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
