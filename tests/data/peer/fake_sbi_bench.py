"""A stand-in for scripts/sbi_bench.py in tests/bench_cli.rs: the same arguments and the same
files written, without sbi. With --inputs (the tasks gkl-gpu simulates for the peer) it returns the
first prior draws of the simulations as its "posterior" samples and records the arrays' shapes;
without --inputs it fails, so the test also sees how the bench treats a failing peer."""
import argparse
import json
import os
import sys

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("task")
ap.add_argument("method")
ap.add_argument("nsims", type=int)
ap.add_argument("--seed", type=int)
ap.add_argument("--observations", required=True)
ap.add_argument("--samples", type=int)
ap.add_argument("--max-seconds", type=float)
ap.add_argument("--inputs")
ap.add_argument("--out", required=True)
a = ap.parse_args()
if a.inputs is None:
    sys.exit(f"fake peer: no --inputs for {a.task}")
d = np.load(a.inputs)
theta, x, x_o = d["theta"], d["x"], d["x_o"]
observations = [int(k) for k in a.observations.split(",")]
for i, k in enumerate(observations):
    np.save(os.path.join(a.out, f"samples_obs{k}.npy"), theta[: a.samples].astype(np.float64))
result = dict(simulate_s=0.0, train_s=1.5, epochs=3, sample_s={str(k): 0.25 for k in observations},
              shapes=dict(theta=list(theta.shape), x=list(x.shape), x_o=list(x_o.shape)))
with open(os.path.join(a.out, "result.json"), "w") as f:
    json.dump(result, f)
