#!/usr/bin/env bash
# Accuracy against speedup, every method at four budgets, with a matched control at each point.
#
#   bash benchmarks/pareto.sh                 both tasks (hours on a 2-core CPU; see docs/results.md)
#   TASKS=sst2 bash benchmarks/pareto.sh      one task; TASKS=negation SEEDS=1 for one seed
#   JOBS=1 bash benchmarks/pareto.sh          one run at a time (default 2, each on one thread)
#   DRY=1 bash benchmarks/pareto.sh           print every run's command, run nothing
#   python benchmarks/summarize.py --pareto runs/pareto-*    the figure and the table
#
# The budget knob of each method:
#   transkimmer      λ of Eq. (7) (--skim-weight), from the pre-trained weights (the paper's way)
#   transkimmer-ft   the same λ, from the fine-tuned baseline run, distilled from it (DEVIATION)
#   trbert           the length penalty of its reward (--length-penalty), from the baseline run
#   ltp              λ of its soft-mask loss (--skim-weight), from the baseline run
# The control of each learned point (runs/pareto-*-random-at-NAME): --method random at that run's
# share of tokens per layer (--keep-shares-from), trained from the same start for the same epochs,
# so what separates the two is which tokens are kept, not how many.
#
# Resumable: a run whose folder holds results.json is skipped; one with a checkpoint (ckpt/) goes
# on with --resume; one that died before its first checkpoint starts again; one that another
# pareto.sh is training (its RUN/.lock names a live process) is waited for, and counts in JOBS. A run that fails is
# logged (runs/pareto-logs/NAME.log), the runs that need it are skipped, and the script goes on.
# Data: $SKIMBERT_DATA/glue when set (a folder holding SST-2/), else the download cache.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
LOGS=runs/pareto-logs
[ -n "${DRY:-}" ] || mkdir -p "$LOGS"
FAILED=()
declare -A PID

declare -A DRYRUN  # DRY=1: the runs printed so far count as finished
finished() { [ -f "runs/$1/results.json" ] || [ -n "${DRYRUN[$1]:-}" ]; }

trainer() {  # the pid of a live process training runs/NAME now (its RUN/.lock), if any
  local pid
  pid=$(grep -o '"pid": [0-9]*' "runs/$1/.lock" 2>/dev/null | grep -o '[0-9]*$') || return 1
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

await() {  # await NAME: until no one trains runs/NAME (this script, or another one before it)
  local pid
  if [ -n "${PID[$1]:-}" ]; then wait "${PID[$1]}" 2>/dev/null; fi
  if pid=$(trainer "$1"); then
    echo "waiting: $1 (pid $pid trains it)"
    while kill -0 "$pid" 2>/dev/null; do sleep 20; done
  fi
}

training() {  # how many pareto runs train now, this script's and any other's
  pgrep -fc "train.py .*--out-dir runs/pareto-" || true
}

job() {  # job NAME NEEDS FLAGS...: train runs/NAME after the run NEEDS ("-" for none) finished
  local name=$1 needs=$2; shift 2
  local dir="runs/$name"
  if [ -n "${DRY:-}" ]; then  # every run's command, finished or not
    echo "python train.py $* --out-dir $dir"; DRYRUN[$name]=1; return
  fi
  trainer "$name" > /dev/null && await "$name"  # an earlier pareto.sh is training it
  if finished "$name"; then echo "done:    $name"; return; fi
  if [ "$needs" != - ]; then
    await "$needs"
    if ! finished "$needs"; then
      echo "skipped: $name (runs/$needs did not finish)"; FAILED+=("$name"); return
    fi
  fi
  while [ "$(training)" -ge "$JOBS" ]; do sleep 10; done
  local how=(--overwrite)
  [ -f "$dir/ckpt/trainer_state.json" ] && how=(--resume)
  echo "start:   $name ($(date +%H:%M))"
  ( python train.py "$@" --out-dir "$dir" "${how[@]}" > "$LOGS/$name.log" 2>&1 \
      || { echo "failed:  $name (see $LOGS/$name.log)"; exit 1; } ) &
  PID[$name]=$!
  sleep 1  # until its train.py is there for training() to count
}

point() {  # point NAME NEEDS FLAGS...: a learned run, queued with its random control's flags
  local name=$1 needs=$2; shift 2
  job "$name" "$needs" "$@"
  CONTROLS+=("$name")
}

control() {  # control NAME FLAGS...: the random control of the learned run pareto-TASK-NAME
  local name=$1 task; shift
  task=$(cut -d- -f2 <<< "$name")
  job "pareto-$task-random-at-${name#pareto-$task-}" "$name" --method random \
    --keep-shares-from "runs/$name" "$@"
}

# ---- SST-2: all-MiniLM-L6-v2, the README rows' 8,000 sentences and settings, seed 42 ----------
sst2() {
  local common=(--task sst2 --model sentence-transformers/all-MiniLM-L6-v2
                --train-subset 8000 --lr 5e-5 --eval-every 125 --threads 1)
  [ -n "${SKIMBERT_DATA:-}" ] && common+=(--data-dir "$SKIMBERT_DATA/glue")
  local base=pareto-sst2-baseline ft=(--finetuned runs/pareto-sst2-baseline)
  job $base - --method baseline --epochs 2 "${common[@]}"
  # LTP's fourth budget sits between 1 and 3: at λ 3 it already answers one class only
  local tk=(0.3 0.6 1.2 2.4) ltp=(0.3 1 3 2) lp=(0.1 0.25 0.5 1)
  for i in 1 2 0 3; do  # the middle budgets first: a front that stops early still spans them
    CONTROLS=()
    point "pareto-sst2-transkimmer-lambda${tk[$i]}" - --method transkimmer --epochs 2 --tau 0.1 \
      --skim-lr 1e-3 --skim-weight "${tk[$i]}" "${common[@]}"
    point "pareto-sst2-transkimmer-ft-lambda${tk[$i]}" $base --method transkimmer --epochs 2 \
      --tau 0.1 --skim-lr 1e-3 --skim-weight "${tk[$i]}" "${ft[@]}" "${common[@]}"
    point "pareto-sst2-trbert-lp${lp[$i]}" $base --method trbert --epochs 1 --rl-epochs 1 \
      --num-samples 4 --skim-lr 1e-3 --length-penalty "${lp[$i]}" "${ft[@]}" "${common[@]}"
    point "pareto-sst2-ltp-lambda${ltp[$i]}" $base --method ltp --epochs 2 --skim-lr 1e-2 \
      --skim-weight "${ltp[$i]}" "${ft[@]}" "${common[@]}"
    control "${CONTROLS[0]}" --epochs 2 "${common[@]}"
    control "${CONTROLS[1]}" --epochs 2 "${ft[@]}" "${common[@]}"
    control "${CONTROLS[2]}" --epochs 1 "${ft[@]}" "${common[@]}"
    control "${CONTROLS[3]}" --epochs 2 "${ft[@]}" "${common[@]}"
  done
}

# ---- synthetic-negation: the negation preset (MiniLM, 1 epoch), three seeds ------------------
negation() {
  local seed=$1 common=(--preset negation --seed "$1")
  local base=pareto-negation-baseline-s$seed ft=(--finetuned "runs/pareto-negation-baseline-s$seed")
  job "$base" - --method baseline "${common[@]}"
  local tk=(0.1 0.25 0.5 1) ltp=(0.1 0.25 0.5 1) lp=(0.05 0.1 0.25 0.5)
  for i in 1 2 0 3; do
    CONTROLS=()
    point "pareto-negation-transkimmer-lambda${tk[$i]}-s$seed" - --method transkimmer \
      --skim-weight "${tk[$i]}" "${common[@]}"
    point "pareto-negation-transkimmer-ft-lambda${tk[$i]}-s$seed" "$base" --method transkimmer \
      --skim-weight "${tk[$i]}" "${ft[@]}" "${common[@]}"
    point "pareto-negation-trbert-lp${lp[$i]}-s$seed" "$base" --method trbert \
      --length-penalty "${lp[$i]}" "${ft[@]}" "${common[@]}"
    point "pareto-negation-ltp-lambda${ltp[$i]}-s$seed" "$base" --method ltp --skim-lr 1e-2 \
      --skim-weight "${ltp[$i]}" "${ft[@]}" "${common[@]}"
    control "${CONTROLS[0]}" "${common[@]}"
    for c in "${CONTROLS[@]:1}"; do control "$c" "${ft[@]}" "${common[@]}"; done
  done
}

for task in ${TASKS:-sst2 negation}; do
  case $task in
    sst2) sst2 ;;
    negation) for seed in ${SEEDS:-1 2 3}; do negation "$seed"; done ;;
    *) echo "error: TASKS holds '$task'; the tasks: sst2 negation" >&2; exit 2 ;;
  esac
done
wait
missing=0
for d in "${!PID[@]}"; do finished "$d" || { echo "failed:  $d (see $LOGS/$d.log)"; missing=1; }; done
[ ${#FAILED[@]} -eq 0 ] && [ $missing -eq 0 ] || exit 1
echo "all runs finished: python benchmarks/summarize.py --pareto runs/pareto-*"
