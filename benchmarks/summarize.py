"""Print one results-table row per train.py run folder, read from its results.json.

python benchmarks/summarize.py runs/sst2-minilm-*
"""

import json
import sys
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


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
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
