"""sbibm's C2ST classifier run by hand with scikit-learn for several seeds, printing the score
and the epochs each fold trained (sbibm's own c2st uses seed 1 only).

    $PY scripts/sklearn_c2st_seeds.py A.npy B.npy 1,2,3,4,5
"""
import sys

import numpy as np
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPClassifier

a = np.load(sys.argv[1]).astype(np.float32)
b = np.load(sys.argv[2]).astype(np.float32)
m, s = a.mean(0), a.std(0, ddof=1)
a, b = (a - m) / s, (b - m) / s
X = np.concatenate([a, b])
y = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
for seed in [int(v) for v in sys.argv[3].split(",")]:
    accs, epochs = [], []
    for tr, te in KFold(5, shuffle=True, random_state=seed).split(X):
        clf = MLPClassifier(activation="relu", hidden_layer_sizes=(10 * X.shape[1],) * 2,
                            max_iter=10000, solver="adam", random_state=seed).fit(X[tr], y[tr])
        accs.append(clf.score(X[te], y[te]))
        epochs.append(clf.n_iter_)
    print(seed, np.mean(accs), epochs, flush=True)
