#!/usr/bin/env bash
# Train one model and score it on sbibm observations 1-5 with the project's C2ST against sbibm's
# reference samples; prints one line per observation and the mean.
# Usage: scripts/quality.sh TASK OUTDIR [train options...]   (e.g. --method hybrid --flow maf)
# Env: SIMULATIONS, SEED; C2ST_DEVICE=cpu for the CPU C2ST (faster on a software adapter);
# REUSE=1 scores a model already trained in OUTDIR instead of training one; MAX_SECONDS=T stops
# an observation's sampling after T seconds (ratio, hybrid), and an observation without all its
# samples is reported as not scored and left out of the mean.
set -euo pipefail
task=$1; out=$2; shift 2
bin=${GKL_BIN:-target/release/gkl-gpu}
ref=${SBIBM_DIR:-../shared/sbibm}
mkdir -p "$out"
start=$(date +%s.%N)
if [ "${REUSE:-0}" != 1 ]; then
  $bin train --task "$task" --simulations "${SIMULATIONS:-10000}" --seed "${SEED:-0}" --out "$out" "$@" 2> "$out/train.log"
fi
train_s=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.1f", a - b }')
sum=0; scored=0
for k in 1 2 3 4 5; do
  $bin sample --model "$out" --observation $k --num-samples 10000 --seed $k --out "$out/s$k.npy" \
    ${MAX_SECONDS:+--max-seconds "$MAX_SECONDS"} 2> "$out/sample$k.log"
  acc=$(grep -o "acceptance [0-9.]*, log Z [-0-9.]*" "$out/sample$k.log" | head -1 || true)
  if c=$($bin c2st --device "${C2ST_DEVICE:-gpu}" "$ref/$task/num_observation_$k/reference_posterior_samples.csv.bz2" "$out/s$k.npy" 2>/dev/null | tail -1) && [ -n "$c" ]; then
    echo "$task obs $k: c2st $c ${acc}"
    sum=$(awk -v a="$sum" -v b="$c" 'BEGIN { print a + b }'); scored=$((scored + 1))
  else
    echo "$task obs $k: not scored (sampling stopped before 10000 samples: $out/sample$k.log) ${acc}"
  fi
done
echo "$task $*: mean c2st $(awk -v a="$sum" -v n="$scored" 'BEGIN { printf "%.4f", n ? a / n : 0 }') over $scored of 5 observations; train process ${train_s} s ($(tail -1 "$out/train.log" 2> /dev/null || echo reused))"
