#!/usr/bin/env bash
# Device call 5 (session 7): issue 5's sampler speed comparison, alone on the machine: ours on the
# GPU (100 observations at once) against sbi's NRE-C rejection sampler (PyTorch on the 16 cores).
# Before: strip -o .gpubin/gkl-gpu target/release/gkl-gpu; cp scripts/device/setup.sh .gpubin/;
# carry .gpubin, .gl, .whl.
exec > >(tee $OUT/run5.log) 2>&1
source .gpubin/setup.sh
$B info 2>&1 | grep -i chosen
echo "== sampler speed"; t0=$SECONDS
timeout 400 scripts/sampler_speed.sh two_moons /tmp/speed5 1000 2>&1 | tail -8
echo "sampler speed block: $((SECONDS - t0)) s"
for m in ratio hybrid; do cp /tmp/speed5/$m/s100.report.json $OUT/speed_$m.report.json; cp /tmp/speed5/train_$m.log $OUT/; done
cp /tmp/speed5/sbi_nre_c.json $OUT/ 2>/dev/null
