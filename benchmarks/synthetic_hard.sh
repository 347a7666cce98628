#!/usr/bin/env bash
# The instructor guide's reference numbers: synthetic-hard (the first word names an aspect and
# only that aspect's keywords decide the label) on a 4-layer tiny BERT, three seeds. Each seed:
# the baseline, then Transkimmer, TR-BERT and LTP from it, and the random control at LTP's
# shares per layer, trained; and the baseline run skimmed at random at each method's shares,
# untrained. python benchmarks/summarize.py --seeds runs/hard-*   prints the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in ${SEEDS:-1 2 3}; do
  base=runs/hard-baseline-s$seed
  python train.py --method baseline --preset hard --seed "$seed" --out-dir "$base" "$@"
  skim="--preset hard --seed $seed --epochs 2 --finetuned $base"
  python train.py --method transkimmer $skim --out-dir "runs/hard-transkimmer-s$seed" "$@"
  # TR-BERT with the optimiser its rows were measured with (ours; its default is its authors')
  python train.py --method trbert $skim --weight-decay 0.01 --warmup 0 --max-grad-norm 0 \
    --out-dir "runs/hard-trbert-s$seed" "$@"
  python train.py --method ltp $skim --skim-lr 1e-2 --out-dir "runs/hard-ltp-s$seed" "$@"
  python train.py --method random $skim --keep-shares-from "runs/hard-ltp-s$seed" \
    --out-dir "runs/hard-random-s$seed" "$@"
  # the fine-tuned baseline as it is, skimming at random at each learned method's shares
  for m in transkimmer trbert ltp; do
    python train.py --method random $skim --no-retrain --keep-shares-from "runs/hard-$m-s$seed" \
      --out-dir "runs/hard-random-noretrain-at-$m-s$seed" "$@"
  done
done
