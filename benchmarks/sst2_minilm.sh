#!/usr/bin/env bash
# The README's SST-2 results: all-MiniLM-L6-v2, a fixed 8,000-example training subset, on a CPU.
# Each line is one row of the results table; run them in this order (TR-BERT and the last
# Transkimmer row start from the baseline run).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMON="--task sst2 --model sentence-transformers/all-MiniLM-L6-v2 --data-dir ../shared/data/glue --train-subset 8000 --lr 5e-5 --eval-every 125 --threads 1"
python train.py --method baseline    $COMMON --epochs 2 --out-dir runs/sst2-minilm-baseline
python train.py --method transkimmer $COMMON --epochs 2 --tau 0.1 --skim-lr 1e-3 --out-dir runs/sst2-minilm-transkimmer
python train.py --method trbert      $COMMON --epochs 1 --rl-epochs 1 --num-samples 4 --skim-lr 1e-3 --length-penalty 0.25 --finetuned runs/sst2-minilm-baseline --out-dir runs/sst2-minilm-trbert
python train.py --method transkimmer $COMMON --epochs 2 --tau 1 --skim-lr 1e-4 --out-dir runs/sst2-minilm-transkimmer-tau1
python train.py --method transkimmer $COMMON --epochs 3 --tau 0.1 --skim-lr 1e-3 --skim-weight 0.2 --finetuned runs/sst2-minilm-baseline --out-dir runs/sst2-minilm-transkimmer-ft
