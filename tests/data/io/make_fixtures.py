"""Regenerates the NumPy-made fixtures read by tests/io_fixtures.rs.

    python3 tests/data/io/make_fixtures.py   (needs numpy; bzip2 from the stdlib)

Every array holds values given by a formula so the Rust tests can check them
without Python: element (i, j, k) of a 3-D array is 100*i + 10*j + k (+0.5 for
floats), element (i, j) of a 2-D array is 10*i + j + 0.25, 1-D is i - 2.
"""
import bz2
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


def grid3(shape, dtype):
    i, j, k = np.indices(shape)
    return (100 * i + 10 * j + k + 0.5).astype(dtype)


def grid2(shape, dtype):
    i, j = np.indices(shape)
    return (10 * i + j + 0.25).astype(dtype)


def vec(n, dtype):
    return (np.arange(n) - 2).astype(dtype)


def save(name, arr, version=None):
    with open(path(name), "wb") as f:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=False)


save("f64_c_2d.npy", grid2((4, 3), "<f8"))
save("f32_c_2d.npy", grid2((4, 3), "<f4"))
save("f64_f_2d.npy", np.asfortranarray(grid2((4, 3), "<f8")))
save("f32_c_3d.npy", grid3((2, 3, 4), "<f4"))
save("f64_f_3d.npy", np.asfortranarray(grid3((2, 3, 4), "<f8")))
save("f32_1d.npy", vec(5, "<f4"))
save("f64_1d.npy", vec(5, "<f8"))
save("i4_1d.npy", vec(5, "<i4"))
save("i8_2d.npy", (10 * np.indices((2, 3))[0] + np.indices((2, 3))[1]).astype("<i8"))
save("u1_1d.npy", np.array([0, 1, 255], dtype="|u1"))
save("b1_1d.npy", np.array([True, False, True]))
save("f8_be_1d.npy", vec(5, ">f8"))
save("f64_v2_2d.npy", grid2((4, 3), "<f8"), version=(2, 0))
save("f64_v3_2d.npy", grid2((4, 3), "<f8"), version=(3, 0))
save("f64_scalar.npy", np.array(3.5))
save("f64_empty.npy", np.zeros((0, 3)))

theta = grid2((4, 3), "<f8")
x = grid3((2, 3, 4), "<f4")
np.savez(path("stored.npz"), theta=theta, x=x)
np.savez_compressed(path("deflate.npz"), theta=theta, x=np.asfortranarray(x))

# sbibm-style sample and observation files (pandas to_csv(index=False) format).
samples = grid2((6, 2), "<f8") * np.array([1.0, -1.0])
csv = "parameter_1,parameter_2\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in samples)
with open(path("samples.csv"), "w") as f:
    f.write(csv)
with open(path("samples.csv.bz2"), "wb") as f:
    f.write(bz2.compress(csv.encode()))
with open(path("observation.csv"), "w") as f:
    f.write("data_1,data_2,data_3\n0.125,-4.5,1e-05\n")

# Model weights written by the reference `safetensors` Python package (optional).
try:
    from safetensors.numpy import save_file
except ImportError:
    save_file = None
if save_file is not None:
    save_file(
        {"layer0.weight": grid2((3, 2), "<f4"), "layer0.bias": vec(3, "<f4")},
        path("py_weights.safetensors"),
        metadata={"framework": "numpy", "note": "made by make_fixtures.py"},
    )
    save_file({"w": grid2((2, 2), "<f2")}, path("py_f16.safetensors"))
