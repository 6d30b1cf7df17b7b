#!/usr/bin/env bash
# Scores a trained model on sbibm's held-out observations 6-10 (shipped inside the sbibm package,
# not in the project) with sbibm's own c2st, and checks every sample lies inside the prior's box.
# Usage: PY=/tmp/gkl-peers-venv/bin/python scripts/heldout.sh TASK MODEL_DIR
set -euo pipefail
task=$1; model=$2
bin=${GKL_BIN:-target/release/gkl-gpu}
files=$($PY -c "import sbibm, os; print(os.path.join(os.path.dirname(sbibm.__file__), 'tasks', '$task', 'files'))")
sum=0
for k in 6 7 8 9 10; do
  d=$files/num_observation_$k
  $bin sample --model "$model" --observation-file "$d/observation.csv" --num-samples 10000 --seed $k --out "$model/heldout$k.npy" 2> "$model/heldout$k.log"
  c=$($PY ../shared/peers/c2st.py "$model/heldout$k.npy" "$d/reference_posterior_samples.csv.bz2" | tail -1)
  inside=$($PY - "$task" "$model/heldout$k.npy" <<'PY'
import sys, numpy as np, sbibm, torch
s = torch.tensor(np.load(sys.argv[2]), dtype=torch.float32)
prior = sbibm.get_task(sys.argv[1]).get_prior_dist()
sup = prior.support
ok = sup.check(s)
ok = ok.all(-1) if ok.dim() > 1 else ok
print(f"{int(ok.sum())}/{len(s)} inside the prior's support")
PY
)
  echo "$task obs $k: sbibm c2st $c; $inside"
  sum=$(awk -v a="$sum" -v b="$c" 'BEGIN { print a + b }')
done
echo "$task $model: held-out mean sbibm c2st $(awk -v a="$sum" 'BEGIN { printf "%.4f", a / 5 }')"
