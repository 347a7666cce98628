"""Print one results-table row per train.py run folder, read from its results.json.

python benchmarks/summarize.py runs/sst2-minilm-*
python benchmarks/summarize.py --seeds runs/hard-*     one row per method: mean ± standard
                                                       deviation over runs named <name>-s<seed>
python benchmarks/summarize.py --check README.md       which README rows no longer match their
                                                       runs' results.json (stale numbers)
"""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def row(folder: Path) -> str:
    r = json.loads((folder / "results.json").read_text())
    flops = r["flops"]
    kept = " / ".join(f"{k:.2f}" for k in r["kept_per_layer"])
    return (
        f"| {folder.name} | {100 * r['metrics']['main']:.2f} | "
        f"{flops['none']['method_gflops']:.3f} | "
        f"{flops['none']['speedup']:.2f}× | {flops['sequence']['speedup']:.2f}× | {kept} | "
        f"{r['wall_time_s'] / 60:.0f} min |"
    )


def seed_rows(folders: list[Path]) -> None:
    """Runs named <name>-s<seed> grouped by name: mean ± sd of the main metric, the FLOPs
    speedup without padding and the share of tokens per layer."""
    groups = defaultdict(list)
    for folder in folders:
        groups[re.sub(r"-s\d+$", "", folder.name)].append(
            json.loads((folder / "results.json").read_text())
        )
    print("| run | seeds | dev (mean ± sd) | speedup, no padding | share of tokens per layer |")
    print("|---|---:|---:|---:|---|")
    for name, rs in groups.items():
        pm = lambda xs: (
            f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.2f}"
        )  # noqa: E731
        dev = pm([100 * r["metrics"]["main"] for r in rs])
        speed = pm([r["flops"]["none"]["speedup"] for r in rs])
        layers = zip(*(r["kept_per_layer"] for r in rs))
        kept = " / ".join(f"{statistics.mean(k):.2f}" for k in layers)
        print(f"| {name} | {len(rs)} | {dev} | {speed}× | {kept} |")


def check(readme: Path) -> int:
    """Compare each README table row whose command names a run (`sst2_minilm.sh NAME` ->
    runs/sst2-minilm-NAME, or `--out-dir RUN`) with that run's results.json: the "dev acc." and
    "speedup, no padding" cells. Returns the number of stale rows."""
    header, stale = None, 0
    for line in readme.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        found = re.search(r"sst2_minilm\.sh ([\w-]+)", line) or re.search(
            r"--out-dir (\S+?)`", line
        )
        if not found or "dev acc." not in header:
            continue
        run = Path(
            f"runs/sst2-minilm-{found.group(1)}"
            if "sst2_minilm" in found.group(0)
            else found.group(1)
        )
        if not (run / "results.json").is_file():
            print(f"unchecked: {cells[0]}: no {run / 'results.json'} (run the row's command)")
            continue
        r = json.loads((run / "results.json").read_text())
        theirs = {"dev acc.": f"{100 * r['metrics']['main']:.2f}",
                  "speedup, no padding": f"{r['flops']['none']['speedup']:.2f}×"}  # fmt: skip
        ours = {k: cells[header.index(k)] for k in theirs if k in header}
        if all(ours[k] == theirs[k] for k in ours):
            print(f"ok: {cells[0]}")
        else:
            stale += 1
            print(f"stale: {cells[0]}: README {ours}, {run}/results.json {theirs}")
    return stale


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        raise SystemExit(1 if check(Path(sys.argv[2])) else 0)
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "--seeds":
        seed_rows([Path(f) for f in sys.argv[2:] if (Path(f) / "results.json").is_file()])
        raise SystemExit(0)
    print(
        "| run | dev | GFLOPs / example (no padding) | speedup, no padding | "
        "speedup, sequence padding | "
        "share of tokens per layer | wall time |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for name in sys.argv[1:]:
        folder = Path(name)
        if not (folder / "results.json").is_file():
            print(
                f"skipped {folder}: no results.json (not a train.py run folder, or not finished)",
                file=sys.stderr,
            )
            continue
        print(row(folder))
