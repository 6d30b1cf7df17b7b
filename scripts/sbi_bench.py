"""The peer column of `gkl-gpu bench --peer-python PY`: one cell (task, method, budget, seed) run
by the sbi library, on the same machine as ours.

Usage:
  PY scripts/sbi_bench.py TASK {npe|nre} NSIMS --seed S --observations 1,2,3 --samples N --out DIR

npe: sbi's NPE (NPE_C) with a neural spline flow (sbibm's NPE); nre: sbi's NRE (NRE_A, the
classifier of sbibm's NRE), sampled by rejection from the prior. sbi's defaults otherwise (batch 200,
early stopping after 20 epochs without improvement). Simulations come from sbibm's own simulator.
Writes DIR/samples_obs<K>.npy (N x d, float64) per observation, then DIR/result.json
(simulate_s, train_s, epochs, sample_s per observation) last, renamed into place, so its presence
means the cell is complete. gkl-gpu scores the samples with its own C2ST against the same
reference samples as its own rows.

Environment: sbi and sbibm (e.g. the venv of ../shared/peers/setup.sh).
"""
import argparse
import json
import os
import time

import numpy as np
import torch

torch.set_num_threads(os.cpu_count() or 2)
import sbibm  # noqa: E402
from sbi.inference import NPE_C, NRE_A  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("task")
ap.add_argument("method", choices=["npe", "nre"])
ap.add_argument("nsims", type=int)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--observations", required=True)
ap.add_argument("--samples", type=int, default=10_000)
ap.add_argument("--out", required=True)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)

torch.manual_seed(a.seed)
np.random.seed(a.seed)
task = sbibm.get_task(a.task)
t0 = time.perf_counter()
theta = task.get_prior()(num_samples=a.nsims)
x = task.get_simulator()(theta)
simulate_s = time.perf_counter() - t0

prior = task.get_prior_dist()
if a.method == "npe":
    inf = NPE_C(prior=prior, density_estimator="nsf", show_progress_bars=False)
else:
    inf = NRE_A(prior=prior, show_progress_bars=False)
inf.append_simulations(theta, x)
t0 = time.perf_counter()
inf.train(training_batch_size=200)
train_s = time.perf_counter() - t0
summary = getattr(inf, "_summary", None) or getattr(inf, "summary", None) or {}
epochs = (summary.get("epochs_trained") or [None])[-1] or len(summary.get("training_loss", []))

posterior = inf.build_posterior() if a.method == "npe" else inf.build_posterior(sample_with="rejection")
sample_s = {}
for k in [int(s) for s in a.observations.split(",") if s]:
    x_o = task.get_observation(num_observation=k)
    t0 = time.perf_counter()
    s = posterior.sample((a.samples,), x=x_o, show_progress_bars=False)
    sample_s[str(k)] = time.perf_counter() - t0
    np.save(os.path.join(a.out, f"samples_obs{k}.npy"), s.numpy().astype(np.float64))

result = dict(task=a.task, method=a.method, nsims=a.nsims, seed=a.seed, simulate_s=simulate_s,
              train_s=train_s, epochs=int(epochs), sample_s=sample_s)
tmp = os.path.join(a.out, "result.json.tmp")
with open(tmp, "w") as f:
    json.dump(result, f)
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(a.out, "result.json"))
print(json.dumps(result))
