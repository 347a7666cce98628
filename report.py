"""Pictures of a run: the layer-wise kept-token curve and the case study, as plain SVG and HTML.

Transkimmer Fig. 4 plots the share of tokens each layer keeps; Table 5 shows sentences with each
token marked by where it was skimmed. train.py writes both into every run folder
(kept_tokens.svg, case_study.html) from what results.json holds, so they can be drawn again,
or several runs side by side, without the model:

    python report.py runs/sst2-minilm-transkimmer runs/sst2-minilm-ltp --out docs/figures

No plotting dependency: the SVG is written by hand, so a reader can see every coordinate.
"""

from __future__ import annotations

import argparse
import html
import json
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
    """kept_tokens.svg and case_study.html of one run, into `out` (default: the run folder)."""
    out = Path(out or run_dir)
    title = f"{results['method'].rpartition('/')[2]} on {results['task']}"
    L = len(results["kept_per_layer"])
    svg = kept_tokens_svg({title: results["kept_per_layer"]}, "share of tokens per layer")
    (out / "kept_tokens.svg").write_text(svg)
    (out / "case_study.html").write_text(case_study_html(results.get("case_study", []), L, title))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw the pictures of train.py runs again.")
    parser.add_argument("runs", nargs="+", help="run folders holding results.json")
    parser.add_argument("--out", help="folder for the pictures (default: each run's own)")
    args = parser.parse_args(argv)
    results = {}
    for run in args.runs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: give the folder of a finished train.py run")
        results[Path(run).name] = json.loads(path.read_text())
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    if len(results) > 1:  # several runs: one chart with a curve each
        curves = {name: r["kept_per_layer"] for name, r in results.items()}
        out = Path(args.out or ".") / "kept_tokens.svg"
        out.write_text(kept_tokens_svg(curves, "share of tokens per layer"))
        print(f"wrote {out}")
        return
    ((name, r),) = results.items()
    write(Path(args.runs[0]), r, args.out)
    print(f"wrote kept_tokens.svg and case_study.html to {args.out or args.runs[0]}")


if __name__ == "__main__":
    main()
