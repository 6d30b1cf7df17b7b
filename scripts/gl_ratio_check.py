"""Compares a ratio model's f(θ, x_o) with the exact log ratio on gaussian_linear (sbibm).

Prior N(0, 0.1·I), x ~ N(θ, 0.1·I) in 10 dimensions, so the posterior is N(x_o/2, 0.05·I) and
the exact log ratio log p(θ|x_o) − log p(θ) is a quadratic whose supremum is 5·ln 2 + 10·|x_o/2|²,
reached at θ = x_o (not at the posterior mode). Rejection from the prior accepts at most
exp(−sup) of its proposals: that, not the model, sets the cost of sampling this task.

Usage: python3 scripts/gl_ratio_check.py MODEL_DIR [OBSERVATION] [N_PRIOR_DRAWS]
(needs numpy and target/release/gkl-gpu, or GKL_BIN)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

model = sys.argv[1]
obs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
gkl = os.environ.get("GKL_BIN", "target/release/gkl-gpu")
sbibm = os.environ.get("SBIBM_DIR", "../shared/sbibm")
xo = np.loadtxt(f"{sbibm}/gaussian_linear/num_observation_{obs}/observation.csv", delimiter=",", skiprows=1)

rng = np.random.default_rng(0)
theta = rng.normal(0.0, np.sqrt(0.1), size=(n, 10))
with tempfile.TemporaryDirectory() as tmp:
    np.save(f"{tmp}/theta.npy", theta.astype(np.float32))
    subprocess.run([gkl, "log-prob", "--model", model, "--theta", f"{tmp}/theta.npy",
                    "--observation", str(obs), "--out", f"{tmp}/lp.npy"], check=True,
                   stderr=subprocess.DEVNULL)
    lp = np.load(f"{tmp}/lp.npy").astype(np.float64)

log_prior = -0.5 * (theta ** 2).sum(1) / 0.1 - 5 * np.log(2 * np.pi * 0.1)
mu = xo / 2
log_post = -0.5 * ((theta - mu) ** 2).sum(1) / 0.05 - 5 * np.log(2 * np.pi * 0.05)
learned = lp - log_prior          # f − log Z(x_o): the model's normalized log ratio
exact = log_post - log_prior
q = [0.5, 0.9, 0.99, 0.999, 1.0]
print(f"observation {obs}, {n} prior draws")
print(f"exact supremum of the log ratio: {5 * np.log(2) + 10 * (mu ** 2).sum():.2f}")
print("quantiles      " + "  ".join(f"{p:>6}" for p in q))
print("learned (norm.) " + "  ".join(f"{v:6.2f}" for v in np.quantile(learned, q)))
print("exact           " + "  ".join(f"{v:6.2f}" for v in np.quantile(exact, q)))
print(f"correlation {np.corrcoef(learned, exact)[0, 1]:.4f}; "
      f"mean |learned − exact| over the top 1% of exact: "
      f"{np.abs(learned - exact)[exact >= np.quantile(exact, 0.99)].mean():.3f}")
