#!/usr/bin/env bash
# The README's synthetic rows: every method on the smoke preset (a 2-layer width-32 BERT trained
# from scratch on the synthetic task, offline, one thread). The random control keeps LTP's
# shares per layer; cls-attention evaluates the baseline run with [CLS]-attention skimming.
# python benchmarks/summarize.py runs/synthetic-*   prints the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
for method in baseline transkimmer trbert ltp; do
  python train.py --method "$method" --preset smoke --out-dir "runs/synthetic-$method" "$@"
done
python train.py --method random --preset smoke --keep-shares-from runs/synthetic-ltp \
  --out-dir runs/synthetic-random "$@"
python train.py --method cls-attention --preset smoke --keep 0.5 \
  --finetuned runs/synthetic-baseline --out-dir runs/synthetic-cls-attention "$@"
