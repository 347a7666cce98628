"""docs/tutorial.md runs and prints what it says.

The rule, which the tutorial's readers rely on:
  * every ```python block runs, top to bottom, in one shared namespace, from the repository root;
  * the ```text block right after it (only blank lines between) is what it prints, exactly;
    a python block with no text block after it must print nothing;
  * in an expected line, `...` stands for any run of characters within that line. It is used
    only for float noise (a difference of 1e-6 that depends on the CPU's arithmetic); the claim
    next to it is always printed as well, e.g. "below 1e-5: True".
Trailing spaces and trailing blank lines are ignored. Other blocks (```bash, ```text on its own)
are for reading, not run here: docs/make_figures.sh runs the commands that make the figures.

    python -m pytest -q tests/test_tutorial.py          # ~15 s on a 2-core CPU
    python tests/test_tutorial.py                        # print each block's output (to write one)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


@dataclass
class Block:
    line: int  # line of the opening fence in tutorial.md, for messages
    code: str
    expected: str | None  # the text block that follows, or None


def python_blocks(text: str) -> list[Block]:
    """The python blocks of a markdown text, each with the text block that follows it."""
    fences = list(FENCE.finditer(text))
    blocks = []
    for k, m in enumerate(fences):
        if m.group(1) != "python":
            continue
        expected = None
        nxt = fences[k + 1] if k + 1 < len(fences) else None
        if nxt and nxt.group(1) == "text" and not text[m.end() : nxt.start()].strip():
            expected = nxt.group(2)
        blocks.append(Block(text.count("\n", 0, m.start()) + 1, m.group(2), expected))
    return blocks


def _lines(s: str) -> list[str]:
    lines = [line.rstrip() for line in s.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected: str, actual: str) -> bool:
    """Line by line; `...` in an expected line matches any characters within that line."""
    want, got = _lines(expected), _lines(actual)
    if len(want) != len(got):
        return False
    for w, g in zip(want, got):
        pattern = ".*".join(re.escape(part) for part in w.split("..."))
        if not re.fullmatch(pattern, g):
            return False
    return True


def run_blocks(blocks: list[Block]):
    """Run the blocks in one namespace from the repository root; yield (block, printed)."""
    namespace = {"__name__": "tutorial"}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for block in blocks:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, f"docs/tutorial.md:{block.line}", "exec"), namespace)
            yield block, out.getvalue()
    finally:
        os.chdir(cwd)


# ----------------------------------------------------------------------------------------------


def test_the_rule_itself():
    assert matches("a\nb 1.0e-06\n", "a\nb 1.0e-06\n\n")
    assert matches("max diff ... (below 1e-5: True)", "max diff 2.5e-06 (below 1e-5: True)")
    assert not matches("max diff ... (below 1e-5: True)", "max diff 2.5e-04 (below 1e-5: False)")
    assert not matches("a", "a\nb")  # an extra line is a mismatch
    assert not matches("a...", "ab\nc")  # `...` stays within its line
    text = "x\n```python\nprint(1)\n```\n\n```text\n1\n```\n```python\npass\n```\nprose\n"
    blocks = python_blocks(text)
    assert [(b.line, b.expected) for b in blocks] == [(2, "1\n"), (9, None)]


def test_every_image_and_file_link_exists():
    prose = FENCE.sub("", TUTORIAL.read_text())  # code such as nets["1"](h1) is no link
    links = re.findall(r"\]\(([^)#\s]+)[^)]*\)", prose)
    local = [link for link in links if "://" not in link]
    assert local, "the tutorial links no figures"
    missing = [link for link in local if not (TUTORIAL.parent / link).exists()]
    assert not missing, f"docs/tutorial.md links files that do not exist: {missing}"


def test_tutorial_prints_what_it_says():
    blocks = python_blocks(TUTORIAL.read_text())
    assert len(blocks) > 10, "the tutorial lost its code blocks?"
    for block, printed in run_blocks(blocks):
        expected = block.expected or ""
        assert matches(expected, printed), (
            f"docs/tutorial.md:{block.line}: the block printed\n{printed}\n"
            f"but the text block after it says\n{expected}"
        )


if __name__ == "__main__":  # print what each block prints, to write or update the tutorial
    sys.path.insert(0, str(ROOT))
    for block, printed in run_blocks(python_blocks(TUTORIAL.read_text())):
        ok = "ok" if matches(block.expected or "", printed) else "DIFFERS"
        print(f"----- docs/tutorial.md:{block.line} ({ok})\n{printed}", end="")
