#!/usr/bin/env bash
# Device call 2: the NPE speed comparison on this machine, then slcp at 10^5 (NPE, NSF).
exec > >(tee $OUT/run2.log) 2>&1
source .gpubin/setup.sh
echo "== npe speed"; t0=$SECONDS
timeout 200 scripts/npe_speed.sh /tmp/speed 2>&1 | tail -5
cp /tmp/speed/ours/metrics.jsonl $OUT/speed_metrics.jsonl; cp /tmp/speed/sbi.json $OUT/speed_sbi.json
echo "npe speed block: $((SECONDS - t0)) s"
echo "== slcp 1e5"; t0=$SECONDS
timeout 330 $B train --task slcp --simulations 100000 --seed 0 --flow nsf --batch-size 1024 --out /tmp/slcp --checkpoint-every 10 2> /tmp/slcp_train.log
rc=$?; echo "train rc $rc after $((SECONDS - t0)) s"; tail -2 /tmp/slcp_train.log; cp /tmp/slcp/metrics.jsonl $OUT/slcp_metrics.jsonl
if [ $rc = 0 ]; then
  REUSE=1 C2ST_DEVICE=cpu timeout 200 scripts/quality.sh slcp /tmp/slcp 2>&1
  python3 -c "
import numpy as np
for k in range(1,6):
    s=np.load('/tmp/slcp/s%d.npy'%k); print(k, 'outside box:', int((np.abs(s)>3).any(1).sum()), 'of', len(s))"
else
  tar -C /tmp -cf $OUT/slcp_run.tar slcp
fi
