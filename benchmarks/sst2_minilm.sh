#!/usr/bin/env bash
# The README's SST-2 results: all-MiniLM-L6-v2, a fixed 8,000-example training subset, on a CPU.
# Each line is one row of the results table; run them in this order (TR-BERT and the from-the-
# baseline Transkimmer row start from the baseline run; the random control copies LTP's shares).
# Data: $SKIMBERT_DATA/glue when set (a folder holding SST-2/), else the download cache.
# One row alone: bash benchmarks/sst2_minilm.sh ltp [--overwrite]   (NAME in runs/sst2-minilm-NAME)
# Another seed: SEED=43 bash benchmarks/sst2_minilm.sh baseline   (runs/sst2-minilm-baseline-s43;
# the rows that start from the baseline then start from that seed's baseline). Unset: seed 42.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SKIMBERT_DATA:+--data-dir $SKIMBERT_DATA/glue}
COMMON="--task sst2 --model sentence-transformers/all-MiniLM-L6-v2 $DATA --train-subset 8000 --lr 5e-5 --eval-every 125 --threads 1"
SEED=${SEED:-}
S=${SEED:+-s$SEED}  # the run folders' suffix
[ -n "$SEED" ] && COMMON="$COMMON --seed $SEED"
ONLY=${1:-}
shift || true
EXTRA=("$@")  # more flags for every row, e.g. --overwrite
NAMES=()
row() {  # row NAME FLAGS...: one results row, into runs/sst2-minilm-NAME
  local name=$1; shift
  NAMES+=("$name")
  if [ -z "$ONLY" ] || [ "$ONLY" = "$name" ]; then
    python train.py "$@" $COMMON --out-dir "runs/sst2-minilm-$name$S" "${EXTRA[@]}"
  fi
}
row baseline       --method baseline    --epochs 2
row transkimmer    --method transkimmer --epochs 2 --tau 0.1 --skim-lr 1e-3
row trbert         --method trbert      --epochs 1 --rl-epochs 1 --num-samples 4 --skim-lr 1e-3 --length-penalty 0.25 --finetuned runs/sst2-minilm-baseline$S --weight-decay 0.01 --warmup 0 --max-grad-norm 0
row transkimmer-tau1 --method transkimmer --epochs 2 --tau 1 --skim-lr 1e-4
row transkimmer-ft --method transkimmer --epochs 3 --tau 0.1 --skim-lr 1e-3 --skim-weight 0.2 --finetuned runs/sst2-minilm-baseline$S
row ltp            --method ltp         --epochs 2 --skim-lr 1e-2 --finetuned runs/sst2-minilm-baseline$S
row random         --method random      --epochs 2 --keep-shares-from runs/sst2-minilm-ltp$S
# the transkimmer row with the authors' optimiser (no weight decay; ours: 0.01)
row transkimmer-authors-opt --method transkimmer --epochs 2 --tau 0.1 --skim-lr 1e-3 --weight-decay 0
# the trbert row measured with our optimiser (above) and with its authors' (now train.py's default
# for TR-BERT: clipping at 1.0, 10% warm-up, no weight decay)
row trbert-authors-opt --method trbert --epochs 1 --rl-epochs 1 --num-samples 4 --skim-lr 1e-3 --length-penalty 0.25 --finetuned runs/sst2-minilm-baseline$S --max-grad-norm 1 --warmup 0.1 --weight-decay 0
if [ -n "$ONLY" ] && [[ " ${NAMES[*]} " != *" $ONLY "* ]]; then
  echo "error: no row named '$ONLY'; the rows: ${NAMES[*]}" >&2
  exit 2
fi
