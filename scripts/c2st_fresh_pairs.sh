#!/usr/bin/env bash
# Issue 3's agreement check on pairs the C2ST was never tuned on: samples the bench grid saved
# (observation 1 of each cell) against the project's reference for that observation, each pair
# scored by sbibm's c2st (scikit-learn, seed 1), by ours on the CPU and, with GPU=1, by ours on
# the GPU (same seed). Prints a Markdown table.
# Usage: PY=/tmp/gkl-peers-venv/bin/python scripts/c2st_fresh_pairs.sh GRID_DIR BUDGET TASK:METHOD...
set -euo pipefail
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}  # see scripts/heldout_reference.sh
grid=$1; budget=$2; shift 2
bin=${GKL_BIN:-target/release/gkl-gpu}
echo "| pair | d | sbibm c2st | ours (CPU) | difference | ours (GPU) |"
echo "|---|---:|---:|---:|---:|---:|"
for cell in "$@"; do
  task=${cell%%:*}; method=${cell#*:}
  ref=$grid/references/$task/obs1_n10000.npy
  s=$grid/samples/$task/${method}_K1_n${budget}_s0_obs1.npy
  d=$(python3 -c "import numpy as np, sys; print(np.load(sys.argv[1]).shape[1])" "$ref")
  sk=$($PY ../shared/peers/c2st.py "$ref" "$s" | tail -1)
  cpu=$($bin c2st --device cpu "$ref" "$s" 2> /dev/null | tail -1)
  gpu=–
  if [ "${GPU:-0}" = 1 ]; then gpu=$($bin c2st "$ref" "$s" 2> /dev/null | tail -1); fi
  diff=$(awk -v a="$cpu" -v b="$sk" 'BEGIN { printf "%+.4f", a - b }')
  echo "| $task, $method, $budget simulations, obs 1 | $d | $sk | $cpu | $diff | $gpu |"
done
