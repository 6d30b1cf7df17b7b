"""Makes pairs of sample sets for checking `gkl-gpu c2st` against sbibm's c2st, and scores each
pair with sbibm's own code.

    PY=$(../shared/peers/setup.sh)
    $PY scripts/c2st_pairs.py OUTDIR        # writes OUTDIR/<pair>_{a,b}.npy and OUTDIR/sbibm.json

Pairs range from indistinguishable (≈0.5) through hard (0.55-0.8) to separable (≈1.0), in 2, 5
and 10 dimensions. Needs ../shared/sbibm for the reference-posterior pairs.
"""
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import torch
from sbibm.metrics import c2st

out = sys.argv[1]
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
sbibm = os.path.join(here, "..", "..", "shared", "sbibm")
rng = np.random.default_rng(seed)


def ref(task, k):
    p = os.path.join(sbibm, task, f"num_observation_{k}", "reference_posterior_samples.csv.bz2")
    return pd.read_csv(p).to_numpy().astype(np.float64)


def shuffled(a):
    return a[rng.permutation(len(a))]


pairs = {}
tm = shuffled(ref("two_moons", 1))
pairs["two_moons_halves"] = (tm[:5000], tm[5000:])
sd = tm.std(0)
pairs["two_moons_shift_0.15sd"] = (tm[:5000], tm[5000:] + 0.15 * sd * np.array([1.0, 0.0]))
cov = np.cov(tm.T)
pairs["two_moons_vs_gaussian"] = (tm, rng.multivariate_normal(tm.mean(0), cov, size=10000))
sl = shuffled(ref("slcp", 1))
m = sl.mean(0)
pairs["slcp_scaled_1.1"] = (sl[:5000], m + 1.1 * (sl[5000:] - m))
pairs["gauss10_shift_0.1"] = (rng.standard_normal((10000, 10)), rng.standard_normal((10000, 10)) + 0.1)
pairs["gauss10_same"] = (rng.standard_normal((10000, 10)), rng.standard_normal((10000, 10)))
pairs["gaussian_linear_obs1_vs_obs2"] = (ref("gaussian_linear", 1), ref("gaussian_linear", 2))
bg = shuffled(ref("bernoulli_glm", 1))
pairs["bernoulli_glm_scaled_1.2"] = (bg[:5000], bg.mean(0) + 1.2 * (bg[5000:] - bg.mean(0)))

scores = {}
for name, (a, b) in pairs.items():
    np.save(os.path.join(out, f"{name}_a.npy"), a.astype(np.float32))
    np.save(os.path.join(out, f"{name}_b.npy"), b.astype(np.float32))
    t = time.time()
    s = float(c2st(torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))))
    scores[name] = {"sbibm_c2st": s, "seconds": time.time() - t, "dim": a.shape[1], "rows": [len(a), len(b)]}
    print(name, scores[name], flush=True)
with open(os.path.join(out, "sbibm.json"), "w") as f:
    json.dump(scores, f, indent=1)
