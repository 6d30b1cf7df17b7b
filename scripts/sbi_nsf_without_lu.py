"""An ablation of sbi's NSF: scripts/sbi_bench.py with nflows' LULinear layers (which sbi's NSF
puts after every coupling transform) replaced by identities. Same arguments as sbi_bench.py.

Usage: PY scripts/sbi_nsf_without_lu.py two_moons npe 1000 --seed 0 --observations 1,2,3,4,5 --out DIR
then score DIR/samples_obs<K>.npy with `gkl-gpu c2st`.
"""
import os
import sys

import nflows.transforms as transforms


class NoLU(transforms.IdentityTransform):
    def __init__(self, features, identity_init=True):
        super().__init__()


transforms.LULinear = NoLU
here = os.path.dirname(os.path.abspath(__file__))
sys.argv = [os.path.join(here, "sbi_bench.py")] + sys.argv[1:]
exec(open(sys.argv[0]).read())
