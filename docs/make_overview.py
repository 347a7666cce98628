"""docs/figures/overview.svg, docs/results.md's figure of its tables: accuracy against speedup.

    python docs/make_overview.py            # write docs/figures/overview.svg
    python docs/make_overview.py --check    # exit 1 if the file is not what it would write

It reads the numbers from the tables of docs/results.md, nothing else: the SST-2 table (its
first) and the synthetic one ("Every method on the synthetic task"). Those rows name their runs,
and `python benchmarks/summarize.py --check docs/results.md` compares them with the runs, so the
figure shows checked numbers. Each point is labelled by its row's run name; the random control
is drawn hollow and red, the baseline as a square. Standard library only, SVG written by hand.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PANELS = (  # (heading in results.md, panel title)
    ("SST-2 on a CPU", "SST-2 dev, MiniLM-L6, 8,000 training sentences (CPU)"),
    ("Every method on the synthetic task", "synthetic task, 2-layer BERT (smoke preset)"),
)


def table_after(markdown: str, heading: str) -> list[dict]:
    """The first table under `## heading`, as dicts from header cell to cell."""
    section = markdown.split(f"## {heading}\n", 1)[1]
    lines = [line for line in section.split("\n\n") if line.startswith("|")][0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]
    ]


def points(rows: list[dict]) -> list[tuple[str, float, float]]:
    """(label, speedup, accuracy) per row; the label is the run's name from its command."""
    out = []
    for r in rows:
        command = r["command"]
        name = re.search(r"sst2_minilm\.sh ([\w-]+)|--out-dir runs/synthetic-([\w-]+)", command)
        label = next(g for g in name.groups() if g)
        out.append((label, float(r["speedup, no padding"].rstrip("×")), float(r["dev acc."])))
    return out


def panel(x0: float, title: str, pts: list[tuple[str, float, float]]) -> list[str]:
    """One scatter panel at horizontal offset x0: speedup across, accuracy up."""
    W, H, left, top, bottom = 430, 380, 52, 40, 48
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    xlo, xhi = 0.8, max(xs) * 1.08
    ylo = min(ys) - 0.6 if max(ys) - min(ys) < 5 else min(ys) - 3
    yhi = max(ys) + 0.4
    X = lambda v: x0 + left + (v - xlo) / (xhi - xlo) * (W - left - 20)  # noqa: E731
    Y = lambda v: top + (yhi - v) / (yhi - ylo) * (H - top - bottom)  # noqa: E731
    parts = [f'<text x="{x0 + W / 2:.1f}" y="20" text-anchor="middle" font-size="13">'
             f"{html.escape(title)}</text>"]  # fmt: skip
    parts.append(f'<rect x="{X(xlo):.1f}" y="{top}" width="{X(xhi) - X(xlo):.1f}" '
                 f'height="{H - top - bottom}" fill="none" stroke="#888"/>')  # fmt: skip
    step = 1 if xhi < 4 else 2
    for t in range(1, int(xhi) + 1, step):
        parts.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top}" y2="{H - bottom}" '
                     f'stroke="#eee"/><text x="{X(t):.1f}" y="{H - bottom + 16}" '
                     f'text-anchor="middle">{t}×</text>')  # fmt: skip
    ystep = 1 if yhi - ylo < 8 else 5
    for t in range(int(ylo) + 1, int(yhi) + 1):
        if t % ystep == 0:
            parts.append(f'<line x1="{X(xlo):.1f}" x2="{X(xhi):.1f}" y1="{Y(t):.1f}" '
                         f'y2="{Y(t):.1f}" stroke="#eee"/><text x="{X(xlo) - 6:.1f}" '
                         f'y="{Y(t) + 4:.1f}" text-anchor="end">{t}</text>')  # fmt: skip
    parts.append(f'<text x="{x0 + W / 2:.1f}" y="{H - 10}" text-anchor="middle">'
                 "FLOPs speedup, no padding</text>")  # fmt: skip
    parts.append(f'<text transform="translate({x0 + 14},{(top + H - bottom) / 2}) rotate(-90)" '
                 'text-anchor="middle">dev accuracy (%)</text>')  # fmt: skip
    boxes = [(X(p[1]) - 6, Y(p[2]) - 6, X(p[1]) + 6, Y(p[2]) + 6) for p in pts]  # the marks
    for label, sx, acc in sorted(pts, key=lambda p: (-p[2], p[1])):
        cx, cy = X(sx), Y(acc)
        if label == "random":
            mark = (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="white" stroke="#d62728" '
                    'stroke-width="2.5"/>')  # fmt: skip
            colour = "#d62728"
        elif label == "baseline":
            mark = f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="#333"/>'
            colour = "#333"
        else:
            mark = f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#1f77b4"/>'
            colour = "#1f77b4"
        name = label + (" (control)" if label == "random" else "")
        width = 6.3 * len(name)  # px at font size 11, near enough to keep labels apart
        end = cx + 8 + width > x0 + W - 8  # near the right edge: the label goes left
        for ty in [cy + 4 + 13 * k * s for k in range(12) for s in (1, -1)][1:]:  # nearest first
            bx0 = cx - 8 - width if end else cx + 8
            box = (bx0, ty - 10, bx0 + width, ty + 2)
            if top + 10 <= ty <= H - bottom and not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes
            ):
                break
        boxes.append(box)
        if abs(ty - cy - 4) > 13:  # moved away from its point: a leader line says whose it is
            lx = cx - 8 if end else cx + 8
            parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{lx:.1f}" y2="{ty - 4:.1f}" '
                         'stroke="#aaa" stroke-width="0.8"/>')  # fmt: skip
        parts.append(mark)
        parts.append(f'<text x="{cx - 8 if end else cx + 8:.1f}" y="{ty:.1f}" '
                     f'text-anchor="{"end" if end else "start"}" font-size="11" '
                     f'fill="{colour}">{html.escape(name)}</text>')  # fmt: skip
    return parts


def overview(markdown: str) -> str:
    """The whole SVG for docs/results.md's text."""
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="880" height="380" '
             'font-family="sans-serif" font-size="12" role="img" aria-label="accuracy against '
             'speedup of every method, with the random control">'
             '<rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    for k, (heading, title) in enumerate(PANELS):
        parts += panel(10 + 440 * k, title, points(table_after(markdown, heading)))
    return "\n".join(parts) + "\n</svg>\n"


if __name__ == "__main__":
    want = overview((DOCS / "results.md").read_text())
    target = DOCS / "figures" / "overview.svg"
    if sys.argv[1:] == ["--check"]:
        if not target.exists() or target.read_text() != want:
            raise SystemExit(
                "docs/figures/overview.svg is out of date: python docs/make_overview.py"
            )
        print("docs/figures/overview.svg matches docs/results.md")
    elif sys.argv[1:]:
        raise SystemExit(__doc__)
    else:
        target.write_text(want)
        print(f"wrote {target}")
