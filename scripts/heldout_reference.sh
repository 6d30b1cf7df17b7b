#!/usr/bin/env bash
# Issue 3's held-out check: the project's reference posterior for sbibm observations 6-10 (shipped
# inside the sbibm package, not in the project) against sbibm's own reference samples, scored by
# sbibm's own c2st. Usage: PY=/tmp/gkl-peers-venv/bin/python scripts/heldout_reference.sh TASK [OBS...]
set -euo pipefail
# One BLAS thread: scikit-learn with OpenBLAS's default two threads was 25x slower on 2 cores.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
task=$1; shift
obs=${*:-6 7 8 9 10}
bin=${GKL_BIN:-target/release/gkl-gpu}
out=${OUT:-/tmp/heldout-ref}/$task
mkdir -p "$out"
# slcp_distractors and bernoulli_glm_raw keep their observations beside slcp's and bernoulli_glm's,
# and share those tasks' reference posteriors.
case $task in
  slcp_distractors) dir=slcp; obs_file=observation_distractors.csv ;;
  bernoulli_glm_raw) dir=bernoulli_glm; obs_file=observation_raw.csv ;;
  *) dir=$task; obs_file=observation.csv ;;
esac
files=$($PY -c "import sbibm, os; print(os.path.join(os.path.dirname(sbibm.__file__), 'tasks', '$dir', 'files'))")
line=""
for k in $obs; do
  d=$files/num_observation_$k
  start=$(date +%s.%N)
  $bin reference --task "$task" --observation-file "$d/$obs_file" --num-samples 10000 --seed "$k" --out "$out/ref$k.npy" 2> "$out/ref$k.log"
  ref_s=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
  c=$($PY ../shared/peers/c2st.py "$out/ref$k.npy" "$d/reference_posterior_samples.csv.bz2" | tail -1)
  printf '%s obs %s: sbibm c2st %s (reference sampling %.1f s)\n' "$task" "$k" "$c" "$ref_s"
  line="$line $c"
done
python3 -c "import sys; v=[float(a) for a in sys.argv[2:]]; print(f'{sys.argv[1]}: max {max(v):.4f}, mean {sum(v)/len(v):.4f}')" "$task" $line
