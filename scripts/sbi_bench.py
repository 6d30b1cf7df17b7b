"""The peer column of `gkl-gpu bench --peer-python PY`: one cell (task, method, budget, seed) run
by the sbi library, on the same machine as ours.

Usage:
  PY scripts/sbi_bench.py TASK {npe|nre} NSIMS --seed S --observations 1,2,3 --samples N
      [--max-seconds T] [--inputs FILE.npz] --out DIR

npe: sbi's NPE (NPE_C) with a neural spline flow (sbibm's NPE); nre: sbi's NRE (NRE_A, the
classifier of sbibm's NRE), sampled by rejection from the prior. sbi's defaults otherwise (batch 200,
early stopping after 20 epochs without improvement). Simulations come from sbibm's own simulator,
except with --inputs: an .npz of `theta` and `x` (the simulations) and `x_o` (one row per
observation, in --observations' order), which gkl-gpu writes for sir and lotka_volterra, whose
sbibm simulators need Julia (diffeqtorch). Those two tasks' lognormal priors are then built here
from sbibm's constants, since sbibm cannot import them without Julia.
Sampling an observation stops after T seconds (the grid's --max-sample-seconds) and keeps the
samples found so far, as ours does: sbi's rejection from the prior, and NPE's rejection of leaked
mass outside the prior's support, can otherwise run for hours. Writes DIR/samples_obs<K>.npy (N x d, float64) per observation, then DIR/result.json
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
# sbibm's slcp_distractors unpickles a pyro mixture with torch.load, which PyTorch >= 2.6 refuses
# under its weights_only default; these are sbibm's own files.
_torch_load = torch.load
torch.load = lambda *a, **k: _torch_load(*a, **{"weights_only": False, **k})
import sbibm  # noqa: E402
from sbi.inference import NPE_C, NRE_A  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("task")
ap.add_argument("method", choices=["npe", "nre"])
ap.add_argument("nsims", type=int)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--observations", required=True)
ap.add_argument("--samples", type=int, default=10_000)
ap.add_argument("--max-seconds", type=float, default=None)
ap.add_argument("--inputs", default=None)
ap.add_argument("--out", required=True)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)

# (loc, scale) of the LogNormal priors of the tasks sbibm needs Julia for (sbibm's task constants).
LOGNORMAL_PRIORS = {
    "sir": ([float(np.log(0.4)), float(np.log(0.125))], [0.5, 0.2]),
    "lotka_volterra": ([-0.125, -3.0, -0.125, -3.0], [0.5, 0.5, 0.5, 0.5]),
}

torch.manual_seed(a.seed)
np.random.seed(a.seed)
observations = [int(s) for s in a.observations.split(",") if s]
if a.inputs is not None:
    inputs = np.load(a.inputs)
    theta = torch.as_tensor(inputs["theta"], dtype=torch.float32)
    x = torch.as_tensor(inputs["x"], dtype=torch.float32)
    x_obs = torch.as_tensor(inputs["x_o"], dtype=torch.float32)
    if len(x_obs) != len(observations):
        raise SystemExit(f"{a.inputs}: {len(x_obs)} rows in x_o for {len(observations)} observations")
    if a.task in LOGNORMAL_PRIORS:
        loc, scale = LOGNORMAL_PRIORS[a.task]
        prior = torch.distributions.Independent(
            torch.distributions.LogNormal(torch.tensor(loc), torch.tensor(scale)), 1)
    else:
        prior = sbibm.get_task(a.task).get_prior_dist()
    simulate_s = 0.0  # simulated by gkl-gpu, not by the peer
    get_observation = lambda i, k: x_obs[i : i + 1]  # noqa: E731
else:
    task = sbibm.get_task(a.task)
    t0 = time.perf_counter()
    theta = task.get_prior()(num_samples=a.nsims)
    x = task.get_simulator()(theta)
    simulate_s = time.perf_counter() - t0
    prior = task.get_prior_dist()
    get_observation = lambda i, k: task.get_observation(num_observation=k)  # noqa: E731

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
best_val = (summary.get("best_validation_loss") or [None])[-1]

posterior = inf.build_posterior() if a.method == "npe" else inf.build_posterior(sample_with="rejection")


def rejection_partial(posterior, x_o):
    """RejectionPosterior.sample's own call, without its final reshape to (samples, d), which
    fails in sbi 0.27 when a timeout returns fewer samples than asked for."""
    from functools import partial
    from sbi.samplers.rejection.rejection import rejection_sample
    posterior.potential_fn.set_x(posterior._x_else_default_x(x_o))
    samples, _ = rejection_sample(
        partial(posterior.potential_fn, track_gradients=True), proposal=posterior.proposal,
        theta_transform=posterior.theta_transform, num_samples=a.samples, show_progress_bars=False,
        warn_acceptance=0.01, max_sampling_batch_size=posterior.max_sampling_batch_size,
        num_samples_to_find_max=posterior.num_samples_to_find_max,
        num_iter_to_find_max=posterior.num_iter_to_find_max, m=posterior.m,
        max_sampling_time=a.max_seconds, return_partial_on_timeout=True, device=posterior._device)
    return samples.reshape(samples.shape[0], -1)


sample_s = {}
for i, k in enumerate(observations):
    x_o = get_observation(i, k)
    t0 = time.perf_counter()
    if a.method == "npe":
        s = posterior.sample((a.samples,), x=x_o, show_progress_bars=False,
                             max_sampling_time=a.max_seconds, return_partial_on_timeout=True)
    else:
        s = rejection_partial(posterior, x_o)
    sample_s[str(k)] = time.perf_counter() - t0
    np.save(os.path.join(a.out, f"samples_obs{k}.npy"), s.numpy().astype(np.float64))

result = dict(task=a.task, method=a.method, nsims=a.nsims, seed=a.seed, simulate_s=simulate_s,
              train_s=train_s, epochs=int(epochs), best_validation_loss=best_val, sample_s=sample_s)
tmp = os.path.join(a.out, "result.json.tmp")
with open(tmp, "w") as f:
    json.dump(result, f)
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(a.out, "result.json"))
print(json.dumps(result))
