"""Accuracy-against-speedup fronts: the runs of benchmarks/pareto.sh as a figure and two tables.

    python benchmarks/summarize.py --pareto runs/pareto-*
    python benchmarks/summarize.py --pareto runs/pareto-* benchmarks/results/pareto.json

Each argument is a run folder (its results.json) or a records file that an earlier call wrote.
The records already in benchmarks/results/pareto.json are kept: a call merges into them, so the
first form, on a machine that holds only some of the runs, keeps the fronts of the others (it
says on stderr how many records it kept; to drop a run, delete its record from the file). Of
records of the same run, a run folder wins over a records file named, and that over the file
already there. The call prints the markdown that docs/results.md holds between its
`<!-- pareto -->` markers, writes the figure to docs/figures/pareto.svg and the records to
benchmarks/results/pareto.json, each atomically (a temporary file, then a rename: a link planted
at either name is replaced, never written through). The records are what keeps a front across
machines: runs/ is not in git, the records are (a few hundred bytes a run), and
`summarize.py --check docs/results.md` compares the page with them. A record is checked as it is
written and as it is read, by one function (record_problem), with report.py's rules for a run's
names and numbers.

A run's place on the front comes from its results.json alone: the method, whether it started
from a fine-tuned run (Transkimmer from the baseline is its own curve), its budget knob (λ, or
TR-BERT's length penalty), its seed, and, for a random control, the learned run whose shares it
copied (--keep-shares-from). Run names are not read. Standard library only.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

# the one check of a run's names and numbers (report.py, at the repository's root), which
# summarize.py and the tests put on the path
from report import (
    MAX_SPEEDUP,
    MIN_SPEEDUP,
    NOT_PLAIN,
    number_problem,
    plain,
    share,
    speedup_problem,
)

# from the repository's root, as the run folders are (runs/...)
FIGURE = Path("docs/figures/pareto.svg")
RECORDS = Path("benchmarks/results/pareto.json")
THRESHOLDS = (1.5, 2.0, 3.0)
SPEEDUPS = ("speedup", "speedup_sequence")  # no padding, sequence padding
# family -> (legend name, the knob's name, colour); colours pass WCAG 3:1 on white
FAMILIES = {
    "transkimmer": ("Transkimmer", "λ", "#1f5fa8"),
    "transkimmer-ft": ("Transkimmer from the baseline", "λ", "#7b3294"),
    "trbert": ("TR-BERT", "length penalty", "#c2410c"),
    "ltp": ("LTP", "λ", "#15803d"),
}
TASKS = {
    "sst2": "SST-2 dev, all-MiniLM-L6-v2, 8,000 training sentences",
    "synthetic-negation": "synthetic-negation dev, all-MiniLM-L6-v2 (negation preset)",
}
# The papers' points on SST-2, as drops from their own baselines (Transkimmer Table 3, BERT-base:
# 93.0 -> 92.3 at 1.58x without padding, 10.89x with sequence padding); drawn from our baseline.
PAPER = {"sst2": [("Transkimmer paper, BERT-base", -0.7, 1.58, 10.89)]}


# ----------------------------------------------------------------------------------------------
# Records: one per run, the few numbers a front needs


def record(name: str, r: dict) -> dict:
    """The record of one run from its results.json (already checked by summarize.read_results),
    itself checked by record_problem, as parse_records will check it: --pareto never writes a
    record its next read refuses."""
    config = r.get("config") if isinstance(r.get("config"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    options = config.get("options") if isinstance(config.get("options"), dict) else {}
    method, source = r["method"], options.get("keep_shares_from") or ""
    family = method + ("-ft" if method == "transkimmer" and train.get("finetuned") else "")
    if not isinstance(source, str):
        raise SystemExit(f"error: {name!r}: its keep_shares_from is {NOT_PLAIN}")
    d = {
        "run": name,
        "task": r["task"],
        "family": "control" if method == "random" else family,
        "knob": options.get("length_penalty" if method == "trbert" else "skim_weight"),
        "seed": train.get("seed"),
        "control_of": Path(source).name if method == "random" and source else None,
        "accuracy": round(100 * r["metrics"]["main"], 4),
        "speedup": round(r["flops"]["none"]["speedup"], 4),
        "speedup_sequence": round(r["flops"]["sequence"]["speedup"], 4),
        "kept_per_layer": [round(k, 4) for k in r["kept_per_layer"]],
        # on a task whose deciding words are known (synthetic-*): the share of them per layer
        "keywords_kept_per_layer": [round(k, 4) for k in r["keywords_kept_per_layer"]]
        if r.get("keywords_kept_per_layer")
        else None,
    }
    problem = record_problem(d)
    if problem:
        raise SystemExit(f"error: {name!r}: its results.json gives a record that --pareto could "
                         f"not read back: {problem}")  # fmt: skip
    return d


def record_problem(d) -> str | None:
    """What is wrong with one record, or None: the one check of a record, which parse_records
    applies to each record it reads and record() to each before --pareto writes it. Names and
    numbers are held to report.py's rules for a results.json: names printable without Markdown's
    | < > [ ] `, accuracy in [-100, 100] (percent), speedups in [0.5, 1000] and within what the
    shares allow, shares in [0, 1]; the knob ≥ 0 and the seed in [0, 2^32), as train.py takes
    them, or null. A bool is no number here (Python's True is the int 1)."""
    if not isinstance(d, dict):
        return "it is not a JSON object"
    for key in ("run", "task", "family", "control_of"):  # control_of: a name, or null
        if not plain(d.get(key)) and not (key == "control_of" and d.get(key) is None):
            return f"its {key} is {NOT_PLAIN}"
    checks = [("accuracy", -100, 100), ("speedup", MIN_SPEEDUP, MAX_SPEEDUP),
              ("speedup_sequence", MIN_SPEEDUP, MAX_SPEEDUP)]  # fmt: skip
    if d.get("knob") is not None:
        checks.append(("knob", 0, math.inf))
    for key, low, high in checks:
        problem = number_problem(key, d.get(key), low, high)
        if problem:
            return f"its {problem}"
    seed = d.get("seed")
    if seed is not None and not (type(seed) is int and 0 <= seed < 2**32):
        return "its seed is not a whole number in [0, 2^32) or null"
    kept, words = d.get("kept_per_layer"), d.get("keywords_kept_per_layer")
    if not isinstance(kept, list) or not kept or not all(map(share, kept)):
        return "its kept_per_layer is not a list of shares in [0, 1]"
    if words is not None and not (isinstance(words, list) and all(map(share, words))):
        return "its keywords_kept_per_layer is not a list of shares in [0, 1], or null"
    problem = speedup_problem(d["speedup"], kept)
    return f"its {problem}" if problem else None


def words_at_cut(d: dict) -> float | None:
    """The share of a run's deciding words still there at its cut: the first layer that keeps at
    most half of the tokens. None where the task marks no words or nothing is cut that deep."""
    words = d.get("keywords_kept_per_layer")
    cut = next((i for i, k in enumerate(d["kept_per_layer"]) if k <= 0.5), None)
    return words[cut] if words and cut is not None and cut < len(words) else None


def parse_records(data: bytes, path: Path) -> list[dict]:
    """A records file's bytes as --pareto writes them, each record checked by record_problem; a
    file that is not one is one line naming it, the record and the fault."""
    try:
        records = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SystemExit(f"error: {path}: not a records file of summarize.py --pareto ({e})")
    if not isinstance(records, list):
        raise SystemExit(f"error: {path}: not a records file of summarize.py --pareto (a list)")
    for i, d in enumerate(records):
        problem = record_problem(d)
        if problem:
            raise SystemExit(f"error: {path}: record {i} ({shown_run(d)}): {problem}")
    return records


def shown_run(d) -> str:
    """A record's run name for an error line: quoted, so a newline in it shows as \\n."""
    return repr(d.get("run"))[:80] if isinstance(d, dict) else "not an object"


# ----------------------------------------------------------------------------------------------
# Points: the learned runs grouped over seeds, each with its control


def _ms(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def _mean_of(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def points(records: list[dict]) -> dict[str, list[dict]]:
    """task -> its points: one per (family, knob), mean and sd over seeds of accuracy and both
    speedups, with the mean accuracy of the controls trained at those runs' shares (None if
    none finished), and the baseline's mean accuracy under family "baseline"."""
    by_run = {d["run"]: d for d in records}
    groups, controls = defaultdict(list), defaultdict(list)
    for d in records:
        if d["family"] == "control":
            learned = by_run.get(d.get("control_of") or "")
            if learned:
                controls[(learned["task"], learned["family"], learned.get("knob"))].append(d)
        elif d["family"] in FAMILIES or d["family"] == "baseline":
            groups[(d["task"], d["family"], d.get("knob"))].append(d)
    out = defaultdict(list)
    order = ["baseline", *FAMILIES]
    for (task, family, knob), ds in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]), kv[0][2] or 0)
    ):
        acc, acc_sd = _ms([d["accuracy"] for d in ds])
        ctrl = controls.get((task, family, knob))
        out[task].append({
            "family": family, "knob": knob, "seeds": len(ds), "accuracy": acc, "sd": acc_sd,
            "speedup": _ms([d["speedup"] for d in ds]),
            "speedup_sequence": _ms([d["speedup_sequence"] for d in ds]),
            "control": _ms([c["accuracy"] for c in ctrl]) if ctrl else None,
            # the control keeps as many tokens per layer but pays for no decider: it sits at a
            # higher speedup than its learned point
            "control_speedup": {k: statistics.mean(c[k] for c in ctrl) for k in SPEEDUPS}
            if ctrl else None,
            "control_seeds": len(ctrl or []),
            "words": _mean_of(words_at_cut(d) for d in ds),
            "control_words": _mean_of(words_at_cut(c) for c in ctrl or []),
        })  # fmt: skip
    return out


def best_at(pts: list[dict], family: str, threshold: float) -> dict | None:
    """The most accurate point of a family whose mean speedup (no padding) is ≥ threshold; of
    equally accurate ones the fastest, the one that dominates the others on the front."""
    ok = [p for p in pts if p["family"] == family and p["speedup"][0] >= threshold]
    return max(ok, key=lambda p: (p["accuracy"], p["speedup"][0]), default=None)


# ----------------------------------------------------------------------------------------------
# The tables


def _knob(v) -> str:
    return "(the default)" if v is None else f"{v:g}"


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")  # the minus sign of the rest of the docs


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _acc(mean: float, sd: float, seeds: int) -> str:
    return f"{mean:.2f} ± {sd:.2f}" if seeds > 1 else f"{mean:.2f}"


def target(pts: list[dict]) -> str:
    """Transkimmer's target on SST-2 read off its fronts: within 1 point of the baseline at a
    speedup of at least 1.5x (the paper, BERT-base: -0.7 at 1.58x), met or missed, by how much."""
    base = next((p["accuracy"] for p in pts if p["family"] == "baseline"), None)
    if base is None:
        return ""
    parts = []
    for family in ("transkimmer", "transkimmer-ft"):
        p = best_at(pts, family, 1.5)
        name = FAMILIES[family][0]
        if p is None:
            parts.append(f"{name} has no point at ≥ 1.5× yet")
            continue
        gap = p["accuracy"] - base
        verdict = "met" if gap >= -1 else f"missed by {-1 - gap:.2f}"
        parts.append(
            f"{name} {_signed(gap)} at {p['speedup'][0]:.2f}× (λ {_knob(p['knob'])}): {verdict}"
        )
    return (
        "Transkimmer's target, within 1 point of the baseline at ≥ 1.5× (the paper, BERT-base: "
        "−0.70 at 1.58×), read off the fronts: " + "; ".join(parts) + "."
    )


def _ordered(pts_by_task: dict) -> list[str]:
    return sorted(pts_by_task, key=lambda t: list(TASKS).index(t) if t in TASKS else 9)


def markdown(pts_by_task: dict[str, list[dict]], every_point: bool = True) -> str:
    """Per task the best accuracy at each speedup (and, on SST-2, Transkimmer's target), then
    every point unless every_point is False (the README's short form)."""
    lines = []
    for task in _ordered(pts_by_task):
        pts = pts_by_task[task]
        base = next((p for p in pts if p["family"] == "baseline"), None)
        lines += [f"**{TASKS.get(task, task)}.** Baseline: "
                  + (_acc(base["accuracy"], base["sd"], base["seeds"]) if base else "not run")
                  + ". The best accuracy each method reaches at a speedup (no padding) of at "
                  "least 1.5×, 2× and 3×, and in brackets its margin over the random control "
                  "trained at that point's shares:", "",
                  "| method | ≥ 1.5× | ≥ 2× | ≥ 3× |", "|---|---:|---:|---:|"]  # fmt: skip
        for family, (name, _, _) in FAMILIES.items():
            cells = []
            for t in THRESHOLDS:
                p = best_at(pts, family, t)
                margin = (
                    f" ({_signed(p['accuracy'] - p['control'][0])})" if p and p["control"] else ""
                )
                cells.append(f"{p['accuracy']:.2f}{margin}" if p else "—")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if task == "sst2" and target(pts):
            lines += ["", target(pts)]
        if not every_point:
            lines.append("")
            continue
        words = any(p["words"] is not None for p in pts)  # a task that marks its deciding words
        lines += ["", "| method | budget | seeds | dev | speedup, no padding | sequence padding "
                  "| control | margin |" + (" deciding words at the cut, control's |" if words
                  else ""), "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if words
                  else "")]  # fmt: skip
        for p in pts:
            if p["family"] == "baseline":
                continue
            name, knob, _ = FAMILIES[p["family"]]
            c = p["control"]
            lines.append(
                f"| {name} | {knob} {_knob(p['knob'])} | {p['seeds']} | "
                f"{_acc(p['accuracy'], p['sd'], p['seeds'])} | {p['speedup'][0]:.2f}× | "
                f"{p['speedup_sequence'][0]:.2f}× | "
                + (f"{_acc(c[0], c[1], p['control_seeds'])} at "
                   f"{p['control_speedup']['speedup']:.2f}× | {_signed(p['accuracy'] - c[0])} |"
                   if c else "— | — |")
                + (f" {_share(p['words'])}, {_share(p['control_words'])} |" if words else "")
            )  # fmt: skip
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# The figure: per task, accuracy against speedup without padding and with sequence padding


# How far under the baseline a panel's y axis reaches; a point further down sits on the floor,
# its value written above it. 20 points keep SST-2's fronts readable beside a collapse to one
# answer; on synthetic-negation the controls sit near chance (50), and they are the lesson.
DEPTH = {"sst2": 20, "synthetic-negation": 55}


def _panel(x0, y0, title: str, pts: list[dict], key: str, base, paper, depth=20) -> list[str]:
    W, H, left, top, bottom = 430, 330, 52, 30, 44
    xs = [p[key][0] for p in pts] + [r[3 if key == "speedup_sequence" else 2] for r in paper]
    xs += [p["control_speedup"][key] for p in pts if p["control"]]
    ys = [p["accuracy"] for p in pts] + [p["control"][0] for p in pts if p["control"]]
    ys += [base] + [base + r[1] for r in paper] if base is not None else []
    ys = ys or [50.0, 100.0]
    xlo, xhi = 1.0, max(xs + [2.0]) * 1.08
    ylo, yhi = min(ys) - 1, max(ys) + 1
    if base is not None:  # `depth` points under the baseline at most
        ylo = max(ylo, base - depth)
    X = lambda v: x0 + left + (v - xlo) / (xhi - xlo) * (W - left - 16)  # noqa: E731
    Y = lambda v: y0 + top + (yhi - max(v, ylo)) / (yhi - ylo) * (H - top - bottom)  # noqa: E731
    parts = [f'<text x="{x0 + W / 2:.1f}" y="{y0 + 18}" text-anchor="middle" font-size="13">'
             f"{html.escape(title)}</text>",
             f'<rect x="{X(xlo):.1f}" y="{y0 + top}" width="{X(xhi) - X(xlo):.1f}" '
             f'height="{H - top - bottom}" fill="none" stroke="#888"/>']  # fmt: skip
    xstep = 0.5 if xhi < 4 else 1 if xhi < 6 else 2 if xhi < 12 else 5
    for k in range(2, int(2 * xhi) + 1):
        t = k / 2
        if t % xstep == 0 or t == 1:
            parts.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{y0 + top}" '
                         f'y2="{y0 + H - bottom}" stroke="#eee"/>'
                         f'<text x="{X(t):.1f}" y="{y0 + H - bottom + 16}" '
                         f'text-anchor="middle">{t:g}×</text>')  # fmt: skip
    # at most 8 grid lines; scores span at most 202 points (percent in [-100, 100], ±1)
    ystep = next((s for s in (1, 2, 5, 10, 20, 50) if (yhi - ylo) / s <= 8), 100)
    for t in range(int(ylo) + 1, int(yhi) + 1):
        if t % ystep == 0:
            parts.append(f'<line x1="{X(xlo):.1f}" x2="{X(xhi):.1f}" y1="{Y(t):.1f}" '
                         f'y2="{Y(t):.1f}" stroke="#eee"/><text x="{X(xlo) - 6:.1f}" '
                         f'y="{Y(t) + 4:.1f}" text-anchor="end">{t}</text>')  # fmt: skip
    what = "no padding" if key == "speedup" else "sequence padding"
    parts.append(f'<text x="{x0 + W / 2:.1f}" y="{y0 + H - 10}" text-anchor="middle">'
                 f"FLOPs speedup, {what}</text>")  # fmt: skip
    parts.append(f'<text transform="translate({x0 + 14},{y0 + (top + H - bottom) / 2}) '
                 'rotate(-90)" text-anchor="middle">dev accuracy (%)</text>')  # fmt: skip
    if base is not None:
        parts.append(f'<line x1="{X(xlo):.1f}" x2="{X(xhi):.1f}" y1="{Y(base):.1f}" '
                     f'y2="{Y(base):.1f}" stroke="#444" stroke-dasharray="6 3"/>'
                     f'<text x="{X(xhi) - 4:.1f}" y="{Y(base) - 4:.1f}" text-anchor="end" '
                     'font-size="11" fill="#444">baseline</text>')  # fmt: skip
    for family, (_, _, colour) in FAMILIES.items():
        mine = sorted((p for p in pts if p["family"] == family), key=lambda p: p[key][0])
        parts += _curve(mine, key, colour, X, Y)
        for p in mine:  # on the floor: the value, written above the mark
            for k, (acc, sx) in enumerate([(p["accuracy"], p[key][0])] + (
                [(p["control"][0], p["control_speedup"][key])] if p["control"] else []
            )):  # fmt: skip
                if acc < ylo:  # the control's number above the method's
                    at = f'x="{X(sx):.1f}" y="{Y(ylo) - 9 - 12 * k:.1f}"'
                    parts.append(f'<text {at} font-size="10" text-anchor="middle" '
                                 f'fill="{colour}">↓{acc:.1f}</text>')  # fmt: skip
    for _, drop, sx, sx_seq in paper if base is not None else []:  # named in the legend
        cx, cy = X(sx_seq if key == "speedup_sequence" else sx), Y(base + drop)
        parts.append(f'<path d="M{cx:.1f},{cy - 7:.1f} L{cx + 6:.1f},{cy + 5:.1f} '
                     f'L{cx - 6:.1f},{cy + 5:.1f} Z" fill="#1f5fa8" stroke="white"/>')  # fmt: skip
    return parts


def _curve(pts: list[dict], key: str, colour: str, X, Y) -> list[str]:
    """A family's points joined in speedup order, error bars of one sd, and its controls hollow
    on a dotted line at the same speedups."""
    parts = []
    for which, dash in (("accuracy", ""), ("control", ' stroke-dasharray="2 3"')):
        xy = [(X(p[key][0]), Y(p["accuracy"])) if which == "accuracy"
              else (X(p["control_speedup"][key]), Y(p["control"][0]))
              for p in pts if which == "accuracy" or p["control"]]  # fmt: skip
        if len(xy) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            parts.append(f'<polyline points="{d}" fill="none" stroke="{colour}"{dash}/>')
    for p in pts:
        cx, cy = X(p[key][0]), Y(p["accuracy"])
        if p["sd"]:
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{Y(p["accuracy"] - p["sd"]):.1f}" '
                         f'y2="{Y(p["accuracy"] + p["sd"]):.1f}" stroke="{colour}"/>')  # fmt: skip
        if p["speedup"][1] or p["speedup_sequence"][1]:
            s = p[key]
            parts.append(f'<line x1="{X(s[0] - s[1]):.1f}" x2="{X(s[0] + s[1]):.1f}" '
                         f'y1="{cy:.1f}" y2="{cy:.1f}" stroke="{colour}"/>')  # fmt: skip
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}"/>')
        if p["control"]:
            cx = X(p["control_speedup"][key])
            parts.append(f'<circle cx="{cx:.1f}" cy="{Y(p["control"][0]):.1f}" r="4.5" '
                         f'fill="white" stroke="{colour}" stroke-width="2"/>')  # fmt: skip
    return parts


def figure(pts_by_task: dict[str, list[dict]]) -> str:
    """The SVG: one row of two panels per task, a legend below."""
    tasks = _ordered(pts_by_task)
    height = 340 * len(tasks) + 100
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="880" height="{height}" '
             'font-family="sans-serif" font-size="12" role="img" aria-label="accuracy against '
             'FLOPs speedup of every skim method at four budgets, with a random control trained '
             'at the same shares of tokens per layer">'
             '<rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    for row, task in enumerate(tasks):
        pts = [p for p in pts_by_task[task] if p["family"] in FAMILIES]
        base = next((p["accuracy"] for p in pts_by_task[task] if p["family"] == "baseline"), None)
        for col, key in enumerate(("speedup", "speedup_sequence")):
            title = TASKS.get(task, task).split(",")[0] + (" (sequence padding)" if col else "")
            parts += _panel(
                10 + 440 * col,
                340 * row,
                title,
                pts,
                key,
                base,
                PAPER.get(task, []),
                DEPTH.get(task, 20),
            )
    y, x = 340 * len(tasks) + 14, 20
    for name, _, colour in FAMILIES.values():
        parts.append(f'<circle cx="{x}" cy="{y}" r="4.5" fill="{colour}"/><text x="{x + 9}" '
                     f'y="{y + 4}" fill="{colour}">{html.escape(name)}</text>')  # fmt: skip
        x += 7 * len(name) + 40  # px at font size 12, near enough
    notes = (
        "hollow, on a dotted line: the random control at the same shares of tokens per layer, "
        "trained\nthe same way (it pays for no decider, so it sits further right). Bars: one sd "
        "over seeds.\nDashed: the baseline. Triangle: Transkimmer's paper (BERT-base, Table 3), "
        "its drop from its own\nbaseline drawn from ours. ↓50.9: a point below the axis "
        "(SST-2: 20 under the baseline), on the floor."
    ).split("\n")
    for k, note in enumerate(notes):
        parts.append(f'<text x="14" y="{y + 26 + 16 * k}" fill="#333">{html.escape(note)}</text>')
    return "\n".join(parts) + "\n</svg>\n"
