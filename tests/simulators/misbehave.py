#!/usr/bin/env python3
"""A simulator for gkl-gpu's tests that misbehaves on purpose (standard library only).

x = theta (the identity, so an honest run is easy to check), except as MODE (argv[1]) says:
  ok       behave
  crash    answer the first batch, then raise an exception (a traceback on stderr, status 1)
  garbage  print text on stdout instead of a framed .npy
  rows     answer one row too few
  width    answer 2 columns first, then 3
  hang     read the first batch and never answer
  nan      x of every fourth row is NaN, of every seventh +Inf
  exit0    exit quietly (status 0) without answering
"""
import struct
import sys
import time


def read_exact(f, n):
    b = b""
    while len(b) < n:
        c = f.read(n - len(b))
        if not c:
            return None
        b += c
    return b


def parse_npy(b):
    assert b[:6] == b"\x93NUMPY", "not npy"
    hl = struct.unpack("<H", b[8:10])[0]
    header = b[10 : 10 + hl].decode("latin1")
    shape = eval(header)["shape"]
    data = b[10 + hl :]
    vals = struct.unpack("<%dd" % (len(data) // 8), data)
    return shape, list(vals)


def npy(rows, cols, vals):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    pad = 64 - (10 + len(header) + 1) % 64
    header += " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack("<%dd" % len(vals), *vals)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    batch = 0
    while True:
        head = read_exact(inp, 8)
        if head is None:
            return
        body = read_exact(inp, struct.unpack("<Q", head)[0])
        (rows, cols), vals = parse_npy(body)
        sys.stderr.write("misbehave: batch %d of %d rows\n" % (batch, rows))
        sys.stderr.flush()
        if mode == "crash" and batch == 1:
            raise RuntimeError("simulated crash in batch 1")
        if mode == "garbage":
            out.write(b"hello from the simulator\n")
            out.flush()
            time.sleep(0.2)
            return
        if mode == "hang":
            time.sleep(3600)
        if mode == "exit0":
            return
        xcols = cols
        x = list(vals)
        if mode == "rows":
            rows -= 1
            x = x[: rows * cols]
        if mode == "width" and batch >= 1:
            xcols = cols + 1
            x = [v for r in range(rows) for v in vals[r * cols : (r + 1) * cols] + [0.0]]
        if mode == "nan":
            for r in range(rows):
                if r % 4 == 0:
                    x[r * cols] = float("nan")
                elif r % 7 == 0:
                    x[r * cols] = float("inf")
        msg = npy(rows, xcols, x)
        out.write(struct.pack("<Q", len(msg)) + msg)
        out.flush()
        batch += 1


if __name__ == "__main__":
    main()
