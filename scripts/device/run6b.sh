#!/usr/bin/env bash
# Device call 6b (session 7), run inline right after run6.sh on the still-warm machine (so without
# the set-up): four `bench --train-only` processes side by side for the 10^4 grid's cells that
# run6.sh had not finished. It finished slcp hybrid (342 s), slcp_distractors npe (119 s) and
# slcp_distractors hybrid again (186 s) in 470 s. (p4 passed --methods twice; clap appended the
# lists, so p4 ran hybrid,npe,npe.)
B=$PWD/.gpubin/gkl-gpu
run() { local d=$1; shift; timeout 470 $B bench --methods hybrid,npe --budgets 10000 --observations 1-5 --seeds 1 \
  --train-only --no-plots --out /tmp/g2/$d "$@" > /tmp/g2_$d.log 2>&1; }
mkdir -p /tmp/g2
run p1 --tasks two_moons,gaussian_mixture & run p2 --tasks slcp,gaussian_linear_uniform &
run p3 --tasks bernoulli_glm & run p4 --tasks slcp_distractors,bernoulli_glm_raw --methods npe & wait
for f in /tmp/g2_*.log; do echo "== $f"; grep -v "^|" $f | tail -4; done
find /tmp/g2 -name cell.json | xargs grep -H train_s
tar -C /tmp -cJf $OUT/g2.tar.xz g2 $(cd /tmp; ls g2_*.log)
