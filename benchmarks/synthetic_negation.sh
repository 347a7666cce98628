#!/usr/bin/env bash
# The instructor guide's discriminating task: synthetic-negation ("not" before a keyword turns its
# vote; the bag of words says nothing about the label) on the pre-trained all-MiniLM-L6-v2, three
# seeds. Each seed: the baseline; Transkimmer, TR-BERT and LTP from it; then, at each learned
# method's shares per layer, a random control trained the same way, and the baseline skimmed at
# random as it is (no retraining). python benchmarks/summarize.py --seeds runs/negation-*  prints
# the rows. The three seeds side by side (SEEDS=1, 2 and 3 in three shells) took about an hour on
# a 2-core CPU. TR-BERT runs with the optimiser its rows were measured with (ours).
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in ${SEEDS:-1 2 3}; do
  base=runs/negation-baseline-s$seed
  python train.py --method baseline --preset negation --seed "$seed" --out-dir "$base" "$@"
  skim="--preset negation --seed $seed --finetuned $base"
  python train.py --method transkimmer $skim --out-dir "runs/negation-transkimmer-s$seed" "$@"
  python train.py --method trbert $skim --weight-decay 0.01 --warmup 0 --max-grad-norm 0 \
    --out-dir "runs/negation-trbert-s$seed" "$@"
  python train.py --method ltp $skim --skim-lr 1e-2 --out-dir "runs/negation-ltp-s$seed" "$@"
  for m in transkimmer trbert ltp; do
    python train.py --method random $skim --keep-shares-from "runs/negation-$m-s$seed" \
      --out-dir "runs/negation-random-at-$m-s$seed" "$@"
    python train.py --method random $skim --no-retrain --keep-shares-from "runs/negation-$m-s$seed" \
      --out-dir "runs/negation-random-noretrain-at-$m-s$seed" "$@"
  done
done
