#!/usr/bin/env bash
# A table like Transkimmer's Table 3 on all-MiniLM-L6-v2: CoLA, MRPC, RTE and STS-B (SST-2's rows
# are benchmarks/sst2_minilm.sh's), each at its Table 2 length and λ (the task's defaults), all of
# its training set, one seed (42), on a CPU. Per task these rows, into runs/glue-minilm-TASK-ROW:
#   baseline      2 epochs
#   transkimmer   2 epochs from the pre-trained weights, τ = 0.1, predictor lr 1e-3 (the SST-2
#                 row's recipe), λ from Table 2
#   transkimmer-one-lr   the same with the predictors at the backbone's 5e-5, as the authors
#                 train them (not in the default ROWS)
#   trbert        from the baseline run: 1 epoch of policy, 1 of everything, λ = 0.25, 4 samples,
#                 our optimiser (the one it was measured with; TR-BERT's default is now its authors')
#   transkimmer-ft   from the baseline run, distilled from it, λ = 0.2, 3 epochs, τ = 0.1,
#                 predictor lr 1e-3 (the SST-2 row transkimmer-ft's recipe; not in the default ROWS)
# Data: $SKIMBERT_DATA/glue when set (a folder holding CoLA/, MRPC/, RTE/, STS-B/), else the
# download cache. The baseline and Transkimmer rows took 5 (CoLA) to 50 (MRPC's Transkimmer)
# minutes each on a 2-core CPU running four trainings at once (transkimmer-ft: 24 to 34); two
# tasks at a time:
#   bash benchmarks/glue_minilm.sh mrpc cola & bash benchmarks/glue_minilm.sh rte stsb
#   python benchmarks/summarize.py --glue runs/glue-minilm-*      the table, three paddings
# Extra flags after `--` go to every row, e.g.  bash benchmarks/glue_minilm.sh rte -- --overwrite
# Only some rows: ROWS="baseline transkimmer" bash benchmarks/glue_minilm.sh cola (the rows that
# start from the baseline run need it first)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SKIMBERT_DATA:+--data-dir $SKIMBERT_DATA/glue}
COMMON="--model sentence-transformers/all-MiniLM-L6-v2 $DATA --lr 5e-5 --threads 1"
TASKS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do TASKS+=("$1"); shift; done
[ $# -gt 0 ] && shift
EXTRA=("$@")
[ ${#TASKS[@]} -gt 0 ] || TASKS=(cola mrpc rte stsb)
ROWS=" ${ROWS:-baseline transkimmer trbert} "  # or any of the five rows above
want() { [[ $ROWS == *" $1 "* ]]; }
for r in $ROWS; do
  case $r in baseline | transkimmer | transkimmer-one-lr | trbert | transkimmer-ft) ;;
    *) echo "error: ROWS: unknown row '$r' (baseline, transkimmer, transkimmer-one-lr, trbert," \
         "transkimmer-ft)" >&2
       exit 2 ;;
  esac
done
for task in "${TASKS[@]}"; do
  out=runs/glue-minilm-$task
  if want baseline; then
    python train.py --task "$task" --method baseline --epochs 2 $COMMON --out-dir "$out-baseline" \
      "${EXTRA[@]}"
  fi
  if want transkimmer; then
    python train.py --task "$task" --method transkimmer --epochs 2 --tau 0.1 --skim-lr 1e-3 \
      $COMMON --out-dir "$out-transkimmer" "${EXTRA[@]}"
  fi
  if want transkimmer-one-lr; then  # the authors' single learning rate for the predictors too
    python train.py --task "$task" --method transkimmer --epochs 2 --tau 0.1 --skim-lr 5e-5 \
      $COMMON --out-dir "$out-transkimmer-one-lr" "${EXTRA[@]}"
  fi
  if want trbert; then
    python train.py --task "$task" --method trbert --epochs 1 --rl-epochs 1 --num-samples 4 \
      --skim-lr 1e-3 --length-penalty 0.25 --finetuned "$out-baseline" $COMMON \
      --weight-decay 0.01 --warmup 0 --max-grad-norm 0 --out-dir "$out-trbert" "${EXTRA[@]}"
  fi
  if want transkimmer-ft; then
    python train.py --task "$task" --method transkimmer --epochs 3 --tau 0.1 --skim-lr 1e-3 \
      --skim-weight 0.2 --finetuned "$out-baseline" $COMMON --out-dir "$out-transkimmer-ft" \
      "${EXTRA[@]}"
  fi
done
