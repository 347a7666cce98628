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
import html
from pathlib import Path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def case_study_rows(features, exit_layers, tokenizer) -> list[dict]:
    """What results.json keeps of the first dev examples: their tokens and, for each, the layer
    before which it was skimmed (L = kept to the end)."""
    return [
        {"tokens": [tokenizer.id_to_token(int(t)) for t in f.input_ids], "exit_layers": exits}
        for f, exits in zip(features, exit_layers)
    ]


def kept_tokens_svg(curves: dict[str, list[float]], title: str) -> str:
    """A line chart: for each named run, the mean share of each example's tokens per layer."""
    W, H, pad = 520, 320, 48
    L = max(len(c) for c in curves.values())
    x = lambda i: pad + i * (W - 2 * pad) / max(1, L - 1)  # noqa: E731
    y = lambda v: H - pad - v * (H - 2 * pad)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">layer</text>',
    ]
    for v in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{pad}" x2="{W - pad}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{pad - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for i in range(L):
        parts.append(f'<text x="{x(i):.1f}" y="{H - pad + 18}" text-anchor="middle">{i}</text>')
    for k, (name, curve) in enumerate(curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(curve))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        parts += [
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>'
            for i, v in enumerate(curve)
        ]
        parts.append(
            f'<text x="{W - pad}" y="{40 + 16 * k}" text-anchor="end" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    return "".join(parts) + "</svg>"


def case_study_html(rows: list[dict], L: int, title: str) -> str:
    """Dev examples with each token coloured by the layer before which it was skimmed."""
    palette = [
        f"hsl({int(220 * i / max(1, L))}, 70%, {45 + 40 * (1 - i / max(1, L)):.0f}%)"
        for i in range(L + 1)
    ]
    legend = "".join(
        f'<span style="background:{palette[i]}">'
        f"{'kept to the end' if i == L else f'skimmed before layer {i}'}</span> "
        for i in range(L + 1)
    )
    body = "".join(
        "<p>"
        + "".join(
            f'<span title="layer {e}" style="background:{palette[e]}">{html.escape(t)}</span> '
            for t, e in zip(r["tokens"], r["exit_layers"])
        )
        + "</p>"
        for r in rows
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>case study: {html.escape(title)}</title>"
        f"<h1>{html.escape(title)}: where each token was skimmed</h1><p>{legend}</p>{body}"
    )


def write(run_dir: Path, results: dict, out: Path | None = None) -> None:
    """kept_tokens.svg and case_study.html of one run, into `out` (default: the run folder).
    Each is written to a temporary name and renamed (weights.atomic_write): a link planted in
    the folder under either name is replaced, never written through."""
    from weights import atomic_write  # here: the rest of this file needs nothing but Python

    out = Path(out or run_dir)
    title = f"{results['method'].rpartition('/')[2]} on {results['task']}"
    L = len(results["kept_per_layer"])
    svg = kept_tokens_svg({title: results["kept_per_layer"]}, "share of tokens per layer")
    atomic_write(out / "kept_tokens.svg", svg.encode())
    page = case_study_html(results.get("case_study", []), L, title)
    atomic_write(out / "case_study.html", page.encode())


def read_results(run: Path) -> dict:
    """RUN/results.json, checked for what the pictures use (method, task, kept_per_layer, the case
    study): a file that is not what train.py writes is one line naming it, never a traceback."""
    from weights import CheckpointError, read_json

    path = Path(run) / "results.json"
    try:
        r = read_json(path)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found: give the folder of a finished train.py run")
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    problem = _results_problem(r)
    if problem:
        raise SystemExit(f"error: {path}: {problem}; the file is not what train.py writes")
    return r


def _results_problem(r) -> str | None:
    def share(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1

    if not isinstance(r, dict):
        return "not a JSON object"
    for key in ("method", "task"):
        if not isinstance(r.get(key), str):
            return f"{key} is missing or not text"
    kept = r.get("kept_per_layer")
    if not isinstance(kept, list) or not kept or not all(map(share, kept)):
        return "kept_per_layer is not a list of shares in [0, 1]"
    cases = r.get("case_study", [])
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        return "case_study is not a list of examples"
    for i, c in enumerate(cases):
        tokens, exits = c.get("tokens"), c.get("exit_layers")
        if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            return f"case_study[{i}].tokens is not a list of text"
        layers = range(len(kept) + 1)  # 0 .. L, L meaning kept to the end
        if not (isinstance(exits, list) and len(exits) == len(tokens)
                and all(type(e) is int and e in layers for e in exits)):  # fmt: skip
            return f"case_study[{i}].exit_layers is not a layer (0..{len(kept)}) per token"
    return None


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
            curves = {name: r["kept_per_layer"] for name, r in results.items()}
            out = Path(args.out) / "kept_tokens.svg"
            atomic_write(out, kept_tokens_svg(curves, "share of tokens per layer").encode())
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
