#!/usr/bin/env bash
# Rejection-sampler throughput, ours against sbi's, in one run on one machine.
# Ours: a ratio (and a hybrid) model trained on TASK at 10^4 simulations, then 100 observations
# (x simulated from prior draws, seed 42) sampled in one batched call. sbi: NRE-C at 10^4, its
# rejection sampler on sbibm observations 1-5 (sbi_run.py). Run it with nothing else on the machine.
# Usage: PY=/tmp/gkl-peers-venv/bin/python scripts/sampler_speed.sh TASK OUTDIR [NUM_SAMPLES]
set -euo pipefail
task=$1; out=$2; n=${3:-1000}
bin=${GKL_BIN:-target/release/gkl-gpu}
mkdir -p "$out"
$bin simulate --task "$task" --num-simulations 100 --seed 42 --out "$out/obs100.npz" 2>/dev/null
python3 - "$out" <<'PY'
import sys, numpy as np
d = np.load(sys.argv[1] + "/obs100.npz"); np.save(sys.argv[1] + "/obs100.npy", d["x"])
PY
for m in ratio hybrid; do
  [ -f "$out/$m/config.json" ] || $bin train --task "$task" --method $m --simulations 10000 --out "$out/$m" 2> "$out/train_$m.log"
  $bin sample --model "$out/$m" --observation-file "$out/obs100.npy" --num-samples "$n" --out "$out/$m/s100.npy" 2> "$out/sample_$m.log"
  python3 - "$out/$m/s100.report.json" "$m" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); reps = r["rejection"]
acc = sum(o["accepted"] for o in reps); prop = sum(o["proposals"] + o["warmup_proposals"] for o in reps)
fin = sum(o["finished"] for o in reps)
print(f"ours {sys.argv[2]}: {len(reps)} observations ({fin} finished), {acc} samples in {r['seconds']:.2f} s: "
      f"{acc / r['seconds']:.0f} accepted samples/s, {prop / r['seconds']:.0f} proposals/s")
PY
done
if [ -n "${PY:-}" ]; then
  $PY ${PEERS_DIR:-../shared/peers}/sbi_run.py "$task" nre_c 10000 --observations 1,2,3,4,5 | tee "$out/sbi_nre_c.json"
fi
