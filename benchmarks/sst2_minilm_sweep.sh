#!/usr/bin/env bash
# The README's "also tried" table: the settings searched around benchmarks/sst2_minilm.sh.
# Same data, model and budget (COMMON); run `bash benchmarks/sst2_minilm.sh baseline` first.
set -euo pipefail
cd "$(dirname "$0")/.."
COMMON="--task sst2 --model sentence-transformers/all-MiniLM-L6-v2 ${SKIMBERT_DATA:+--data-dir $SKIMBERT_DATA/glue} --train-subset 8000 --lr 5e-5 --eval-every 125 --threads 1"
BASE="--finetuned runs/sst2-minilm-baseline"
OUT=runs/sst2-sweep
python train.py --method baseline    $COMMON --epochs 3 --out-dir $OUT/baseline-3-epochs
python train.py --method transkimmer $COMMON --epochs 2 --tau 0.1 --skim-lr 1e-3 --skim-weight 0.1 --out-dir $OUT/transkimmer-lambda0.1
python train.py --method transkimmer $COMMON --epochs 1 --tau 0.1 --skim-lr 1e-3 $BASE --no-distill --out-dir $OUT/transkimmer-ft-1-epoch-no-kd
python train.py --method transkimmer $COMMON --epochs 2 --tau 0.1 --skim-lr 1e-3 $BASE --no-distill --out-dir $OUT/transkimmer-ft-no-kd
python train.py --method transkimmer $COMMON --epochs 1 --tau 0.1 --skim-lr 1e-3 $BASE --out-dir $OUT/transkimmer-ft-1-epoch
python train.py --method transkimmer $COMMON --epochs 2 --tau 0.1 --skim-lr 1e-3 $BASE --out-dir $OUT/transkimmer-ft-lambda0.3
python train.py --method transkimmer $COMMON --epochs 2 --tau 0.1 --skim-lr 1e-3 --skim-weight 0.2 $BASE --out-dir $OUT/transkimmer-ft-lambda0.2
python train.py --method transkimmer $COMMON --epochs 2 --tau 0.1 --skim-lr 1e-3 --skim-weight 0.25 $BASE --out-dir $OUT/transkimmer-ft-lambda0.25
for LP in 0.2 0.3 0.5; do
  python train.py --method trbert $COMMON --epochs 1 --rl-epochs 1 --num-samples 4 --skim-lr 1e-3 --length-penalty $LP $BASE --weight-decay 0.01 --warmup 0 --max-grad-norm 0 --out-dir $OUT/trbert-lp$LP
done
# twice the data (16,000 sentences, ~20 min a run)
COMMON16="${COMMON/--train-subset 8000 --lr 5e-5 --eval-every 125/--train-subset 16000 --lr 5e-5 --eval-every 250}"
python train.py --method baseline    $COMMON16 --epochs 2 --out-dir $OUT/16k-baseline
python train.py --method transkimmer $COMMON16 --epochs 2 --tau 1 --skim-lr 1e-4 --out-dir $OUT/16k-transkimmer-tau1
