"""sbi's NPE on an sbibm task, scored like scripts/ref_nll.sh scores ours: the mean negative
log-density of sbibm's reference posterior samples under the trained posterior, per observation
1-5 and averaged (lower is better; differences are KL differences).

Usage: PY scripts/sbi_ref_nll.py TASK NSIMS SEED DENSITY_ESTIMATOR   (e.g. two_moons 1000 0 nsf)
DENSITY_ESTIMATOR: any of sbi's names (nsf, maf, zuko_nsf, ...). Batch 200, sbi's defaults
otherwise. Also prints sbi's best validation loss. Needs sbi and sbibm (../shared/peers/setup.sh).
"""
import sys

import numpy as np
import torch

torch.set_num_threads(2)
import sbibm  # noqa: E402
from sbi.inference import NPE_C  # noqa: E402

task_name, n, seed, de = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(seed)
np.random.seed(seed)
task = sbibm.get_task(task_name)
theta = task.get_prior()(num_samples=n)
x = task.get_simulator()(theta)
inf = NPE_C(prior=task.get_prior_dist(), density_estimator=de, show_progress_bars=False)
inf.append_simulations(theta, x)
inf.train(training_batch_size=200)
post = inf.build_posterior()
v = []
for k in range(1, 6):
    ref = task.get_reference_posterior_samples(num_observation=k)
    lp = post.log_prob(ref, x=task.get_observation(num_observation=k), norm_posterior=False)
    v.append(-lp.mean().item())
print(task_name, n, seed, de, "reference NLL", " ".join(f"{a:.4f}" for a in v),
      "mean", f"{sum(v) / 5:.4f}", "best validation loss", inf._summary["best_validation_loss"][-1])
