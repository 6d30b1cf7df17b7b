#!/usr/bin/env bash
# Device call 4 (for the next session with a GPU; not run yet): issue 5's open measurements.
# 1. The sampler speed comparison, ours on the GPU against sbi's NRE-C rejection sampler on the
#    host's CPU, in one run (scripts/sampler_speed.sh).
# 2. The ratio on gaussian_linear, observations 1-5: K = 8 contrastive draws, SiLU ratio net, 10^4
#    simulations; 10,000 samples per observation by rejection from the prior (about 185 M
#    proposals each: 20 minutes per observation on lavapipe), then the CPU C2ST.
# Before: rebuild the carried binary (strip -o .gpubin/gkl-gpu target/release/gkl-gpu), carry
# .gpubin, .gl and .whl as in session 5 (run1-3). Keep each device call under 8 minutes;
# everything is written under $OUT as it goes.
exec > >(tee $OUT/run4.log) 2>&1
source .gpubin/setup.sh
echo "== sampler speed"; t0=$SECONDS
timeout 240 scripts/sampler_speed.sh two_moons /tmp/speed4 1000 2>&1 | tail -8
echo "sampler speed block: $((SECONDS - t0)) s"
echo "== gaussian_linear ratio"; t0=$SECONDS
timeout 150 $B train --task gaussian_linear --method ratio --simulations 10000 --seed 0 --contrastive 8 \
  --ratio-activation silu --out /tmp/glr 2> /tmp/glr_train.log; tail -1 /tmp/glr_train.log
for k in 1 2 3 4 5; do
  timeout 60 $B sample --model /tmp/glr --observation $k --num-samples 10000 --max-seconds 40 --seed $((10 + k)) \
    --out /tmp/glr/s$k.npy 2> /tmp/glr/sample$k.log; tail -1 /tmp/glr/sample$k.log
  cp /tmp/glr/s$k.npy /tmp/glr/s$k.report.json $OUT/ 2>/dev/null
done
for k in 1 2 3 4 5; do
  echo "obs $k: $($B c2st --device cpu $SBIBM_DIR/gaussian_linear/num_observation_$k/reference_posterior_samples.csv.bz2 /tmp/glr/s$k.npy 2>/dev/null | tail -1)"
done
echo "gaussian_linear block: $((SECONDS - t0)) s"
