"""Pictures of a run: the layer-wise kept-token curve and the case study, as plain SVG and HTML.

Transkimmer Fig. 4 plots the share of tokens each layer keeps; Table 5 shows sentences with each
token marked by where it was skimmed. train.py writes both into every run folder
(kept_tokens.svg, case_study.html) from what results.json holds, so they can be drawn again,
or several runs side by side, without the model:

    python report.py runs/sst2-minilm-transkimmer runs/sst2-minilm-ltp --out docs/figures

It reads results.json and nothing else of a run folder (no code, no weights), refusing a file
that is not what train.py writes with one line that names it.

No plotting dependency: the SVG is written by hand, so a reader can see every coordinate.
"""

from __future__ import annotations

import argparse
import colorsys
import html
import math
from pathlib import Path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
DASHES = ("", "7 4", "2 3", "9 3 2 3", "4 2", "1 2")  # a line that lies on another still shows
MARKERS = ("circle", "square", "triangle", "diamond", "circle", "square")
CHART_TITLE = "share of tokens each layer processed"


def case_study_rows(features, exit_layers, tokenizer, predictions=None) -> list[dict]:
    """What results.json keeps of the first dev examples: their tokens and, for each, the layer
    before which it was skimmed (L = kept to the end); the gold label; the model's prediction
    when given (a class id, or a score for regression); on the synthetic tasks, which tokens are
    the keywords that decide the label (1 = keyword)."""
    rows = []
    for k, (f, exits) in enumerate(zip(features, exit_layers)):
        row = {"tokens": [tokenizer.id_to_token(int(t)) for t in f.input_ids], "exit_layers": exits}
        if isinstance(f.label, (int, float)) and not isinstance(f.label, bool):
            row["label"] = f.label
        if predictions is not None and predictions[k] is not None:
            row["prediction"] = predictions[k]
        if getattr(f, "keyword_mask", None) is not None:
            row["keywords"] = [int(m) for m in f.keyword_mask]
        rows.append(row)
    return rows


def _marker(shape: str, cx: float, cy: float, colour: str, hollow: bool = False) -> str:
    fill = "white" if hollow else colour
    style = f'fill="{fill}" stroke="{colour}" stroke-width="1.5"'
    if shape == "square":
        return f'<rect x="{cx - 3.5:.1f}" y="{cy - 3.5:.1f}" width="7" height="7" {style}/>'
    if shape == "triangle":
        return (f'<polygon points="{cx:.1f},{cy - 4.5:.1f} {cx - 4.5:.1f},{cy + 3.5:.1f} '
                f'{cx + 4.5:.1f},{cy + 3.5:.1f}" {style}/>')  # fmt: skip
    if shape == "diamond":
        return (f'<polygon points="{cx:.1f},{cy - 5:.1f} {cx + 5:.1f},{cy:.1f} {cx:.1f},'
                f'{cy + 5:.1f} {cx - 5:.1f},{cy:.1f}" {style}/>')  # fmt: skip
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" {style}/>'


def kept_tokens_svg(curves: dict[str, dict], title: str) -> str:
    """A line chart, Transkimmer Fig. 4: for each named run, the share of each example's tokens
    that each layer processed (`kept`, from kept_per_layer), with its accuracy and speedup in the
    legend (`note`). Where `keywords` is given (the synthetic tasks' keywords_kept_per_layer),
    the share of the label-deciding keywords each layer processed is drawn too, dotted, in the
    run's colour. Each run has its own colour, dash pattern, marker and width (the first widest),
    so a run whose line lies exactly on another's (a random control at a method's shares) shows."""
    W, H, left, right, top, bottom = 720, 360, 64, 260, 40, 52
    if any(c.get("keywords") for c in curves.values()):
        title += " (dotted: of the keywords)"
    L = max(len(c["kept"]) for c in curves.values())
    x0 = lambda i: left + i * (W - left - right) / max(1, L - 1)  # noqa: E731
    y = lambda v: top + (1 - v) * (H - top - bottom)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{(left + W - right) / 2}" y="22" text-anchor="middle" font-size="14">'
        f"{html.escape(title)}</text>",
        f'<text x="{(left + W - right) / 2}" y="{H - 10}" text-anchor="middle">layer i (0 = the '
        "first)</text>",
        f'<text transform="translate(16,{(top + H - bottom) / 2}) rotate(-90)" '
        'text-anchor="middle">share processed by layer i</text>',
    ]
    for v in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" x2="{W - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#ddd"/><text x="{left - 8}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{v:.2f}</text>')  # fmt: skip
    for i in range(L):
        parts.append(f'<text x="{x0(i):.1f}" y="{H - bottom + 18}" text-anchor="middle">{i}</text>')
    legend_y = top + 6
    for k, (name, c) in enumerate(curves.items()):
        colour, dash = COLOURS[k % len(COLOURS)], DASHES[k % len(DASHES)]
        shape, width = MARKERS[k % len(MARKERS)], max(1.5, 5 - 1.2 * k)
        shift = 4 * (k - (len(curves) - 1) / 2)  # px: equal lines are drawn side by side
        x = lambda i, shift=shift: x0(i) + shift  # noqa: E731
        lines = [("kept", c["kept"], dash, width, False)]
        if c.get("keywords"):
            lines.append(("keywords", c["keywords"], "1 3", 1.5, True))
        for _, values, pattern, w, hollow in lines:
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
            dashes = f' stroke-dasharray="{pattern}"' if pattern else ""
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                         f'stroke-width="{w}"{dashes}/>')  # fmt: skip
            parts += [_marker(shape, x(i), y(v), colour, hollow) for i, v in enumerate(values)]
        # legend: a sample of the line and marker, the run's name, its accuracy and speedup
        lx = W - right + 16
        for label, pattern, w, hollow in [(name, dash, width, False)] + (
            [("  its keywords", "1 3", 1.5, True)] if c.get("keywords") else []
        ):
            dashes = f' stroke-dasharray="{pattern}"' if pattern else ""
            parts.append(f'<line x1="{lx}" x2="{lx + 28}" y1="{legend_y}" y2="{legend_y}" '
                         f'stroke="{colour}" stroke-width="{w}"{dashes}/>')  # fmt: skip
            parts.append(_marker(shape, lx + 14, legend_y, colour, hollow))
            parts.append(f'<text x="{lx + 36}" y="{legend_y + 4}" fill="#222">'
                         f"{html.escape(label)}</text>")  # fmt: skip
            legend_y += 16
            if label == name and c.get("note"):
                parts.append(f'<text x="{lx + 36}" y="{legend_y + 2}" fill="#555" '
                             f'font-size="11">{html.escape(c["note"])}</text>')  # fmt: skip
                legend_y += 16
        legend_y += 6
    return "".join(parts) + "</svg>"


def _luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour with channels in [0, 1]."""
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio of two colours, 1 to 21 (4.5 is the AA minimum for text)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def layer_colours(L: int) -> list[tuple[str, str]]:
    """(background, text) per exit layer 0..L: dark blue for skimmed before layer 0, through
    lighter hues, to pale yellow for kept to the end; the text black or white, whichever
    contrasts more with its background."""
    out = []
    for i in range(L + 1):
        t = i / max(1, L)
        rgb = colorsys.hls_to_rgb((0.66 - 0.5 * t) % 1, 0.28 + 0.6 * t, 0.75)
        text = max(((1.0, 1.0, 1.0), "#ffffff"), ((0.0, 0.0, 0.0), "#000000"),
                   key=lambda c: contrast(rgb, c[0]))[1]  # fmt: skip
        out.append(("#" + "".join(f"{round(255 * c):02x}" for c in rgb), text))
    return out


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    return tuple(int(hex_colour[k : k + 2], 16) / 255 for k in (1, 3, 5))


def case_study_html(rows: list[dict], L: int, title: str) -> str:
    """Dev examples with each token coloured by the layer before which it was skimmed, the gold
    label and the prediction above each, keywords (synthetic tasks) bold and underlined."""
    colours = layer_colours(L)

    def cell(text: str, e: int, keyword: bool = False, tip: str = "") -> str:
        bg, fg = colours[e]
        style = f"background:{bg};color:{fg}" + (";font-weight:bold;text-decoration:underline"
                                                  if keyword else "")  # fmt: skip
        return (
            f'<span class="t" title="{html.escape(tip)}" style="{style}">{html.escape(text)}</span>'
        )

    legend = " ".join(
        cell("kept to the end" if i == L else f"skimmed before layer {i}", i) for i in range(L + 1)
    )
    if any("keywords" in r for r in rows):
        legend += " " + cell("keyword", L, keyword=True) + " = a word that decides the label"
    body = []
    for r in rows:
        head = []
        if "label" in r:
            head.append(f"gold <b>{html.escape(str(r['label']))}</b>")
        if "prediction" in r:
            p = r["prediction"]
            right = "label" in r and p == r["label"]
            verdict = (" (right)" if right else " (wrong)") if "label" in r else ""
            head.append(f"predicted <b>{html.escape(str(p))}</b>{verdict}")
        kept = sum(e == L for e in r["exit_layers"])
        head.append(f"{kept} of {len(r['tokens'])} tokens kept to the end")
        keywords = r.get("keywords", [0] * len(r["tokens"]))
        tokens = " ".join(
            cell(t, e, bool(k), f"skimmed before layer {e}" if e < L else "kept to the end")
            for t, e, k in zip(r["tokens"], r["exit_layers"], keywords)
        )
        body.append(f'<p><span class="head">{" · ".join(head)}</span><br>{tokens}</p>')
    style = ("body{font-family:sans-serif;max-width:60em;margin:1em auto;line-height:2}"
             ".t{padding:1px 3px;border-radius:3px}p{margin:0.8em 0}"
             ".head{font-size:0.85em;color:#333}")  # fmt: skip
    return (
        f"<!doctype html><meta charset='utf-8'><title>case study: {html.escape(title)}</title>"
        f"<style>{style}</style><h1>{html.escape(title)}: where each token was skimmed</h1>"
        "<div>Each token's colour says the layer before which it was skimmed (Transkimmer Table "
        f"5); pads are not shown.</div><p>{legend}</p>{''.join(body)}"
    )


def _note(results: dict) -> str:
    """'accuracy 85.00 · 1.66× fewer FLOPs' from a results.json, or '' when it lacks them."""
    metrics, flops = results.get("metrics"), results.get("flops")
    none = flops.get("none") if isinstance(flops, dict) else None
    main = metrics.get("main") if isinstance(metrics, dict) else None
    speed = none.get("speedup") if isinstance(none, dict) else None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (main, speed)):
        return ""
    name = next((k for k, v in results["metrics"].items() if k != "main" and v == main), "main")
    return f"{name} {100 * main:.2f} · speedup {speed:.2f}×"


def _curve(results: dict) -> dict:
    return {"kept": results["kept_per_layer"], "keywords": results.get("keywords_kept_per_layer"),
            "note": _note(results)}  # fmt: skip


def write(run_dir: Path, results: dict, out: Path | None = None) -> None:
    """kept_tokens.svg and case_study.html of one run, into `out` (default: the run folder).
    Each is written to a temporary name and renamed (weights.atomic_write): a link planted in
    the folder under either name is replaced, never written through."""
    from weights import atomic_write  # here: the rest of this file needs nothing but Python

    out = Path(out or run_dir)
    title = f"{results['method'].rpartition('/')[2]} on {results['task']}"
    L = len(results["kept_per_layer"])
    svg = kept_tokens_svg({title: _curve(results)}, CHART_TITLE)
    atomic_write(out / "kept_tokens.svg", svg.encode())
    page = case_study_html(results.get("case_study", []), L, title)
    atomic_write(out / "case_study.html", page.encode())


# ----------------------------------------------------------------------------------------------
# Checking a results.json: the one check of the names and numbers a run's pictures, tables and
# fronts print. benchmarks/summarize.py and benchmarks/fronts.py use it too, so report.py, the
# tables and the records refuse the same files, each with one line that says what is wrong.

MARKDOWN = set("|<>[]`")  # a table cell's end, HTML, a link, code: never in a name we print
MAX_SPEEDUP = 1000.0  # sequence padding of short sentences gives 10-20×; 1000× is no measurement
# speedup = baseline FLOPs / method FLOPs (flops.py): below 1 only by what deciding costs, a few
# percent for every method here; at 0.5 the decider would cost as much as the whole encoder
MIN_SPEEDUP = 0.5
MAX_LAYERS = 256  # weights.MAX_LAYERS (not imported: this file needs no torch), the deepest model
# the scores that are correlations, in [-1, 1]; every other (accuracy, F1, exact match) is a
# fraction in [0, 1], and "main" is one of the task's (metrics.compute_metrics)
CORRELATIONS = {"matthews", "mcc", "pearson", "spearman"}
# How far a speedup without padding may exceed the 1 / (mean share) its shares suggest: see
# speedup_problem; real runs lie within 15% of it
SLACK = 4.0


def finite(v) -> bool:
    """A JSON number that is a finite float: not a bool (Python's True is the int 1), not NaN or
    infinite, and not an integer too large for a float (10**400: every format of it fails)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def share(v) -> bool:
    return finite(v) and 0 <= v <= 1


def plain(text) -> bool:
    """Text fit to print into Markdown, a table's cell or a heading: printable (a newline would
    start a forged row), under 200 characters, and none of | < > [ ] ` (a cell of its own, HTML,
    a link, code)."""
    return (isinstance(text, str) and text.isprintable() and len(text) < 200
            and not MARKDOWN & set(text))  # fmt: skip


NOT_PLAIN = "not printable text of under 200 characters without | < > [ ] `"  # what plain says


def number_problem(name: str, v, low: float, high: float) -> str | None:
    """None if v is a finite number in [low, high], else what is wrong, naming the field."""
    if not finite(v):
        return f"{name} is not a finite number (NaN or infinite, too large, or not a number)"
    if not low <= v <= high:
        return f"{name} is {v:g}, outside [{low:g}, {high:g}]"
    return None


def speedup_problem(speedup: float, kept: list[float]) -> str | None:
    """Whether a speedup without padding (a finite number) is one a run that kept these shares of
    tokens per layer can reach. A run that kept every token in every layer (all shares 1.00)
    saved nothing: its speedup is at most 1 (the decider only costs). Otherwise a layer that
    processes a share k of the tokens costs about k of a full layer (its matmuls are linear in
    the tokens but for attention's scores, a few percent at these lengths), so the speedup is
    near 1 / (the mean share), below it by the decider's cost. The shares are means over
    sentences while FLOPs are summed over tokens (a long sentence skimmed hard weighs more), so
    this is no exact bound: SLACK allows four times as much. A simple check of consistency,
    which refuses a forged 50× beside shares that say nothing was skimmed."""
    mean = sum(kept) / len(kept)
    if mean == 1 and speedup > 1.01:  # rounding aside
        return f"the speedup without padding is {speedup:.2f}×, yet every layer kept every token"
    if speedup * mean > SLACK:
        return (f"the speedup without padding, {speedup:.2f}×, is more than {SLACK:g} times the "
                f"{1 / mean:.2f}× its shares of tokens per layer suggest")  # fmt: skip
    return None


def results_problem(r) -> str | None:
    """What is wrong with a results.json, or None: method and task are names fit to print, the
    shares are in [0, 1], the scores (fractions, or correlations in [-1, 1]) and speedups finite
    and possible, and the case study well formed. Each is checked where present: the pictures
    need no scores; benchmarks/summarize.py checks that its tables' fields are there."""
    if not isinstance(r, dict):
        return "not a JSON object"
    for key in ("method", "task"):
        if not isinstance(r.get(key), str):
            return f"{key} is missing or not text"
        if not plain(r[key]):
            return f"{key} holds a newline or control character, one of | < > [ ] `, or 200 " \
                "characters or more: it is printed into Markdown"  # fmt: skip
    kept = r.get("kept_per_layer")
    if not isinstance(kept, list) or not kept or not all(map(share, kept)):
        return "kept_per_layer is not a list of shares in [0, 1]"
    if len(kept) > MAX_LAYERS:  # one share per layer: a million would draw a 160 MB picture
        return f"kept_per_layer has {len(kept):,} shares, one per layer of a model of at most " \
            f"{MAX_LAYERS} layers"  # fmt: skip
    keywords = r.get("keywords_kept_per_layer")
    if keywords is not None and not (isinstance(keywords, list) and len(keywords) == len(kept)
                                     and all(map(share, keywords))):  # fmt: skip
        return "keywords_kept_per_layer is not a share in [0, 1] per layer"
    return _scores_problem(r) or _case_study_problem(r, len(kept))


def scores_problem(metrics) -> str | None:
    """What is wrong with a run's metrics, or None: printable names, each score finite, a
    correlation (CORRELATIONS) in [-1, 1], any other a fraction in [0, 1], and "main" one of
    the others (where there are others)."""
    if not isinstance(metrics, dict):
        return "metrics is not an object of scores"
    if not all(map(plain, metrics)):
        return f"a metric's name in metrics is {NOT_PLAIN}"
    for name, v in metrics.items():
        low = -1 if name in CORRELATIONS or name == "main" else 0
        problem = number_problem(f"metrics.{name}", v, low, 1)
        if problem:
            return problem + ("" if low else " (a fraction; only a correlation may be negative)")
    others = [v for k, v in metrics.items() if k != "main"]
    if "main" in metrics and others and metrics["main"] not in others:
        return f"metrics.main is {metrics['main']:g}, none of the metrics beside it"
    return None


def _scores_problem(r: dict) -> str | None:
    """The metrics (scores_problem) and the FLOPs speedups, each in [MIN_SPEEDUP, MAX_SPEEDUP];
    the one without padding also within what the shares allow (speedup_problem)."""
    problem = scores_problem(r.get("metrics", {}))
    if problem:
        return problem
    flops = r.get("flops") if isinstance(r.get("flops"), dict) else {}
    for padding in ("none", "batch", "sequence"):
        f = flops.get(padding)
        if isinstance(f, dict) and "speedup" in f:
            name = f"flops.{padding}.speedup"
            problem = number_problem(name, f["speedup"], MIN_SPEEDUP, MAX_SPEEDUP)
            if problem and finite(f["speedup"]) and f["speedup"] < MIN_SPEEDUP:
                problem += " (a method costing twice the encoder it skims: not a measurement)"
            if padding == "none" and not problem:
                problem = speedup_problem(f["speedup"], r["kept_per_layer"])
            if problem:
                return problem
    return None


def _case_study_problem(r: dict, L: int) -> str | None:
    cases = r.get("case_study", [])
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        return "case_study is not a list of examples"
    for i, c in enumerate(cases):
        tokens, exits = c.get("tokens"), c.get("exit_layers")
        if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            return f"case_study[{i}].tokens is not a list of text"
        layers = range(L + 1)  # 0 .. L, L meaning kept to the end
        if not (isinstance(exits, list) and len(exits) == len(tokens)
                and all(type(e) is int and e in layers for e in exits)):  # fmt: skip
            return f"case_study[{i}].exit_layers is not a layer (0..{L}) per token"
        for key in ("label", "prediction"):  # optional: a class id or a regression score
            if key in c and not finite(c[key]):
                return f"case_study[{i}].{key} is not a number"
        marks = c.get("keywords", [0] * len(tokens))
        if not (isinstance(marks, list) and len(marks) == len(tokens)
                and all(type(m) is int and m in (0, 1) for m in marks)):  # fmt: skip
            return f"case_study[{i}].keywords is not a 0 or 1 per token"
    return None


def read_results(run: Path) -> dict:
    """RUN/results.json, checked by results_problem: a file that is not what train.py writes is
    one line naming it, never a traceback."""
    from weights import CheckpointError, read_json

    path = Path(run) / "results.json"
    try:
        r = read_json(path)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found: give the folder of a finished train.py run")
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    problem = results_problem(r)
    if problem:
        raise SystemExit(f"error: {path}: {problem}; the file is not what train.py writes")
    return r


def main(argv: list[str] | None = None) -> None:
    from weights import atomic_write

    parser = argparse.ArgumentParser(description="Draw the pictures of train.py runs again.")
    parser.add_argument("runs", nargs="+", help="run folders holding results.json")
    parser.add_argument("--out", help="folder for the pictures (default: a single run's own; "
                        "needed with several runs)")  # fmt: skip
    args = parser.parse_args(argv)
    if len(args.runs) > 1 and not args.out:  # one chart for all: where is no run's own folder
        raise SystemExit("error: several runs make one chart: say where it goes with --out DIR")
    results = {}
    for run in args.runs:
        # each curve's label: the folder's name, or the path as given where two names are alike
        names = [Path(r).name for r in args.runs]
        label = Path(run).name if names.count(Path(run).name) == 1 else run
        if label in results:
            raise SystemExit(f"error: {run} is given twice")
        results[label] = read_results(Path(run))
    if args.out:
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SystemExit(f"error: --out {args.out}: {e}") from None
    try:
        if len(results) > 1:  # several runs: one chart with a curve each
            curves = {name: _curve(r) for name, r in results.items()}
            out = Path(args.out) / "kept_tokens.svg"
            atomic_write(out, kept_tokens_svg(curves, CHART_TITLE).encode())
            print(f"wrote {out}")
            return
        ((name, r),) = results.items()
        if args.out:
            write(Path(args.runs[0]), r, args.out)
        else:  # into the run's own folder: not while train.py (or another report.py) writes it
            from runs import locked

            with locked(Path(args.runs[0]), f"report.py {args.runs[0]}"):
                write(Path(args.runs[0]), r)
    except OSError as e:
        raise SystemExit(f"error: cannot write the pictures: {e}") from None
    print(f"wrote kept_tokens.svg and case_study.html to {args.out or args.runs[0]}")


if __name__ == "__main__":
    main()
