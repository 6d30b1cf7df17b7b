#!/usr/bin/env bash
# A low-noise quality figure for development: the mean negative log-density of sbibm's reference
# posterior samples under a trained model, averaged over observations 1-5. It is KL(p || q) up to
# the reference's entropy, so lower is better and differences between models are KL differences.
# (For ratio and hybrid models log q includes the sampler's estimate of log Z(x_o).)
# Usage: scripts/ref_nll.sh TASK MODEL_DIR   (needs numpy)
set -euo pipefail
task=$1; model=$2
bin=${GKL_BIN:-target/release/gkl-gpu}
ref=${SBIBM_DIR:-../shared/sbibm}
line=""
for k in 1 2 3 4 5; do
  $bin log-prob --model "$model" --theta "$ref/$task/num_observation_$k/reference_posterior_samples.csv.bz2" \
    --observation $k --out "$model/ref_logq$k.npy" 2> /dev/null > /dev/null
  line="$line $(python3 -c "import numpy as np; print(f'{-np.load(\"$model/ref_logq$k.npy\").mean():.4f}')")"
done
python3 -c "import sys; v=[float(a) for a in sys.argv[2:]]; print(f'{sys.argv[1]}: reference NLL per observation', ' '.join(f'{a:.4f}' for a in v), f'mean {sum(v)/5:.4f}')" "$model" $line
