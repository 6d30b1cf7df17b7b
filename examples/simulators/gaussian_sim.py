#!/usr/bin/env python3
"""A conjugate Gaussian simulator for `gkl-gpu train --simulator-cmd`.

Model: theta ~ N(0, I_2) (examples/simulators/gaussian_prior.json) and x = theta + eps,
eps ~ N(0, 0.5^2 I_2). The exact posterior for an observation x_o is
    N(x_o / (1 + s^2), s^2 / (1 + s^2) I_2),  s = 0.5,
i.e. mean 0.8 x_o and standard deviation sqrt(0.2) = 0.447 in each coordinate; with --exact X1,X2
--num-samples N --out FILE this script writes N draws of it as .npy (for `gkl-gpu c2st`).

Protocol (the same for any simulator): each message is an unsigned 64-bit little-endian byte
count followed by that many bytes of a complete .npy file. theta arrives on stdin as a
(batch, 2) float64 array; the answer, x as a (batch, 2) array, goes to stdout. Repeat until stdin
closes. Needs numpy.
"""
import io
import os
import struct
import sys

import numpy as np

NOISE = 0.5


def read_exact(stream, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None if not buf else bytes(buf)
        buf.extend(chunk)
    return bytes(buf)


def serve():
    rng = np.random.default_rng(int(os.environ.get("GKL_GPU_SEED", "0")))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = read_exact(stdin, 8)
        if head is None:
            return  # stdin closed: done
        (n,) = struct.unpack("<Q", head)
        theta = np.load(io.BytesIO(read_exact(stdin, n)))
        x = theta + NOISE * rng.standard_normal(theta.shape)
        out = io.BytesIO()
        np.save(out, x.astype(np.float64))
        body = out.getvalue()
        stdout.write(struct.pack("<Q", len(body)))
        stdout.write(body)
        stdout.flush()


def exact(argv):
    x_o = np.array([float(v) for v in argv[argv.index("--exact") + 1].split(",")])
    n = int(argv[argv.index("--num-samples") + 1])
    path = argv[argv.index("--out") + 1]
    s2 = NOISE**2
    rng = np.random.default_rng(12345)
    draws = x_o / (1 + s2) + np.sqrt(s2 / (1 + s2)) * rng.standard_normal((n, x_o.size))
    np.save(path, draws)


if __name__ == "__main__":
    if "--exact" in sys.argv:
        exact(sys.argv)
    else:
        serve()
