#!/usr/bin/env bash
# Device call 3: the bench grid at 10^3 (8 paper tasks, npe/ratio/hybrid, obs 1-5) and bernoulli_glm_raw
# at 10^4 (npe, hybrid), four bench processes side by side on one GPU, CPU C2ST on 16 cores.
exec > >(tee $OUT/run3.log) 2>&1
source .gpubin/setup.sh
common="--observations 1-5 --seeds 1 --c2st-device cpu --max-sample-seconds 30"
run() { local dir=$1; shift; timeout 500 $B bench $common --out /tmp/$dir "$@" > /tmp/$dir.log 2>&1; echo "$dir rc $?"; }
run g1 --tasks two_moons,gaussian_mixture,gaussian_linear,gaussian_linear_uniform --budgets 1000 &
run g2 --tasks slcp,slcp_distractors --budgets 1000 &
run g3 --tasks bernoulli_glm,bernoulli_glm_raw --budgets 1000 &
run g4 --tasks bernoulli_glm_raw --methods npe,hybrid --budgets 10000 &
wait
for d in g1 g2 g3 g4; do
  echo "== $d: $(wc -l < /tmp/$d/journal.jsonl) rows"; tail -3 /tmp/$d.log
  tar -C /tmp --exclude=models -cJf $OUT/$d.tar.xz $d $d.log
done
ls -la $OUT
