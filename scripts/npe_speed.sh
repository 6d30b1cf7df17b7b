#!/usr/bin/env bash
# Issue 4's time comparison, in one run on one machine: sbi's default NPE (MAF, batch 200,
# lr 5e-4) against the default `gkl-gpu train`, both on two_moons with 10^4 simulations to early
# stopping, then both scored on observation 1 with the project's C2ST against sbibm's reference.
# Usage: PY=/tmp/gkl-peers-venv/bin/python scripts/npe_speed.sh OUTDIR [extra gkl-gpu train options]
set -euo pipefail
out=$1; shift
bin=${GKL_BIN:-target/release/gkl-gpu}
ref=${SBIBM_DIR:-../shared/sbibm}/two_moons/num_observation_1/reference_posterior_samples.csv.bz2
peers=${PEERS_DIR:-../shared/peers}
mkdir -p "$out"
$PY "$peers/sbi_run.py" two_moons npe_maf 10000 --observations 1 --out "$out/sbi" > "$out/sbi.json"
start=$(date +%s.%N)
$bin train --task two_moons --simulations 10000 --seed 0 --out "$out/ours" "$@" 2> "$out/ours.log"
ours_s=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
$bin sample --model "$out/ours" --observation 1 --num-samples 10000 --seed 1 --out "$out/ours_s1.npy" 2> /dev/null
sbi_c=$($bin c2st "$ref" "$out/sbi/samples_obs1.npy" 2> /dev/null | tail -1); echo "$sbi_c" > "$out/sbi_c2st.txt"
ours_c=$($bin c2st "$ref" "$out/ours_s1.npy" 2> /dev/null | tail -1); echo "$ours_c" > "$out/ours_c2st.txt"
python3 - "$out" "$ours_s" "$sbi_c" "$ours_c" <<'PY'
import json, statistics, sys
out, ours_s, sbi_c, ours_c = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(f"{out}/sbi.json").read()
sbi = json.loads(text[text.rindex('{"task"'):])  # sbi may print its own text on the same line
rows = [json.loads(l) for l in open(f"{out}/ours/metrics.jsonl")]
pps = statistics.median(r["pairs_per_s"] for r in rows)
print(f"sbi NPE-MAF defaults: training {sbi['train_s']:.1f} s, {sbi.get('epochs')} epochs, "
      f"{sbi.get('train_pairs_per_s', float('nan')):.0f} pairs/s, C2ST obs 1 {sbi_c}")
print(f"gkl-gpu train defaults (whole process): {ours_s:.1f} s, {len(rows)} epochs, "
      f"median {pps:.0f} pairs/s, C2ST obs 1 {ours_c}")
print(f"ratio ours/sbi: {ours_s / sbi['train_s']:.3f}")
PY
