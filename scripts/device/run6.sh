#!/usr/bin/env bash
# Device call 6 (session 7): the 10^4 grid's training with the current defaults (new NSF, plateau
# schedule), hybrid and npe, the 8 paper tasks plus sir and lotka_volterra, one `bench --train-only`
# process per task side by side on the GPU; beside them the ratio on gaussian_linear (K = 8, SiLU),
# sampled for observations 1-5. Sampling and C2ST of the grid run afterwards on the development
# machine (`gkl-gpu bench` with the same options, without --train-only).
exec > >(tee $OUT/run6.log) 2>&1
source .gpubin/setup.sh
tasks="two_moons gaussian_mixture slcp slcp_distractors gaussian_linear gaussian_linear_uniform bernoulli_glm bernoulli_glm_raw sir lotka_volterra"
for t in $tasks; do
  timeout 520 $B bench --tasks $t --methods hybrid,npe --budgets 10000 --observations 1-5 --seeds 1 \
    --train-only --no-plots --out /tmp/g/$t > /tmp/g_$t.log 2>&1 &
done
( timeout 300 $B train --task gaussian_linear --method ratio --simulations 10000 --seed 0 --contrastive 8 \
    --ratio-activation silu --out /tmp/glr 2> /tmp/glr_train.log; echo "glr train rc $?"; tail -1 /tmp/glr_train.log
  for k in 1 2 3 4 5; do
    timeout 60 $B sample --model /tmp/glr --observation $k --num-samples 10000 --max-seconds 40 --seed $((10 + k)) \
      --out /tmp/glr/s$k.npy 2> /tmp/glr/sample$k.log; tail -1 /tmp/glr/sample$k.log
  done
  tar -C /tmp -cf $OUT/glr.tar glr glr_train.log ) &
wait
for t in $tasks; do echo "== $t"; grep -E "training failed|trained|epochs|error" /tmp/g_$t.log | tail -3; done
tar -C /tmp -cJf $OUT/g1e4.tar.xz g $(cd /tmp; ls g_*.log)
ls -la $OUT
