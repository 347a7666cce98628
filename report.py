"""Pictures of a run: the layer-wise kept-token curve and the case study, as plain SVG and HTML.

Transkimmer Fig. 4 plots the share of tokens each layer keeps; Table 5 shows sentences with each
token marked by where it was skimmed. train.py writes both for every run (kept_tokens.svg,
case_study.html). No plotting
dependency: the SVG is written by hand, so a reader can see every coordinate it holds.
"""

from __future__ import annotations

import html


def kept_tokens_svg(kept_per_layer: list[float], title: str) -> str:
    """A line chart, written by hand as SVG (no plotting dependency): share of tokens per layer."""
    W, H, pad = 480, 300, 48
    L = len(kept_per_layer)
    x = lambda i: pad + i * (W - 2 * pad) / max(1, L - 1)  # noqa: E731
    y = lambda v: H - pad - v * (H - 2 * pad)  # noqa: E731
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(kept_per_layer))
    ticks = "".join(
        f'<text x="{x(i):.1f}" y="{H - pad + 18}" text-anchor="middle">{i}</text>' for i in range(L)
    )
    yt = "".join(
        f'<text x="{pad - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>'
        f'<line x1="{pad}" x2="{W - pad}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        for v in (0, 0.25, 0.5, 0.75, 1)
    )
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3"/>' for i, v in enumerate(kept_per_layer)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">'
        f'<rect width="{W}" height="{H}" fill="white"/>{yt}{ticks}'
        f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>{dots}'
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}: share of tokens per layer</text>'
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">layer</text></svg>'
    )


def case_study_html(features, exit_layers, tokenizer, L: int, title: str) -> str:
    """Dev examples with each token coloured by the layer before which it was skimmed."""
    palette = [
        f"hsl({int(220 * i / max(1, L))}, 70%, {45 + 40 * (1 - i / max(1, L)):.0f}%)"
        for i in range(L + 1)
    ]
    rows = []
    for f, exits in zip(features, exit_layers):
        spans = "".join(
            f'<span title="layer {e}" style="background:{palette[e]}">{html.escape(tokenizer.id_to_token(int(t)))}</span> '
            for t, e in zip(f.input_ids, exits)
        )
        rows.append(f"<p>{spans}</p>")
    legend = "".join(
        f'<span style="background:{palette[i]}">{"kept to the end" if i == L else f"skimmed before layer {i}"}</span> '
        for i in range(L + 1)
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>case study: {html.escape(title)}</title>"
        f"<h1>{html.escape(title)}: where each token was skimmed</h1><p>{legend}</p>{''.join(rows)}"
    )
