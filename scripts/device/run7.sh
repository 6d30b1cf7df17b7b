#!/usr/bin/env bash
# Device call 7 (session 7): the gaussian_linear ratio model of run6.sh (carried in .carry/glr)
# sampled alone on the GPU, observations 1-5 (run6's sampling shared the GPU with 11 training
# processes and ran out of its 40 s); then more of the 10^4 grid's training, two processes.
# As run, the call hit its 560 s limit before the final tar although the bench processes had a
# 508 s timeout: their training was lost (and run6.sh's, whose 30 s of set-up came on top of its
# 520 s). Next time: timeout -k 5, a minute of margin, and tar each finished cell as it lands.
# On this H100, processes sharing the GPU time-slice it: 11 trained 4 cells in 520 s, 4 trained 3.
exec > >(tee $OUT/run7.log) 2>&1
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
B=$PWD/.gpubin/gkl-gpu
for k in 1 2 3 4 5; do
  timeout 40 $B sample --model .carry/glr --observation $k --num-samples 10000 --max-seconds 30 --seed $((10 + k)) \
    --out $OUT/glr_s$k.npy 2>&1 | grep -E "observation $k|acceptance" | tail -1
done
echo "sampling done at $SECONDS s"
left=$((520 - SECONDS))
run() { local d=$1; shift; timeout $left $B bench --methods hybrid,npe --budgets 10000 --observations 1-5 --seeds 1 \
  --train-only --no-plots --out /tmp/g3/$d "$@" > /tmp/g3_$d.log 2>&1; }
mkdir -p /tmp/g3
run q1 --tasks two_moons,gaussian_linear_uniform & run q2 --tasks gaussian_mixture,bernoulli_glm & wait
find /tmp/g3 -name cell.json | xargs grep -H train_s
tar -C /tmp -cJf $OUT/g3.tar.xz g3 $(cd /tmp; ls g3_*.log)
