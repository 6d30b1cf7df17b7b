#!/usr/bin/env python3
"""Issue 6's third ablation: how the hybrid sampler's acceptance rate relates to the quality of
its base flow. Reads a bench directory's results.csv (a run with --hybrid-base-c2st) and prints,
per task, the hybrid rows' acceptance, the base flow's C2ST, the hybrid's C2ST, and Spearman rank
correlations (over all rows and within tasks). Standard library only.

Usage: python3 scripts/acceptance_vs_base.py BENCH_DIR [BUDGET]
"""
import csv
import statistics
import sys


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    if len(a) < 3:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


def num(v):
    """A C2ST cell: empty where the hybrid drew too few samples to be scored."""
    return float(v) if v else float("nan")


def mean(v):
    v = [a for a in v if a == a]
    return statistics.fmean(v) if v else float("nan")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    budget = sys.argv[2] if len(sys.argv) > 2 else None
    rows = []
    with open(f"{sys.argv[1]}/results.csv") as f:
        for r in csv.DictReader(f):
            if r["method"] != "hybrid" or not r["base_c2st"] or not r["acceptance_rate"]:
                continue
            if budget and r["budget"] != budget:
                continue
            rows.append(r)
    if not rows:
        sys.exit("no hybrid rows with base_c2st and acceptance_rate (run the bench with --hybrid-base-c2st)")
    tasks = sorted({r["task"] for r in rows})
    print("| task | rows | acceptance (mean, range) | base C2ST | hybrid C2ST | hybrid − base | "
          "ρ(acceptance, base C2ST) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    within = []
    for t in tasks:
        tr = [r for r in rows if r["task"] == t]
        acc = [float(r["acceptance_rate"]) for r in tr]
        base = [float(r["base_c2st"]) for r in tr]
        hyb = [num(r["c2st"]) for r in tr]
        rho = spearman(acc, base)
        within.append(rho)
        unscored = sum(1 for h in hyb if h != h)
        note = f" ({unscored} not scored)" if unscored else ""
        print(f"| {t} | {len(tr)} | {statistics.fmean(acc):.4f} ({min(acc):.4f}–{max(acc):.4f}) | "
              f"{statistics.fmean(base):.3f} | {mean(hyb):.3f}{note} | "
              f"{mean([h - b for h, b in zip(hyb, base)]):+.4f} | {rho:+.2f} |")
    acc = [float(r["acceptance_rate"]) for r in rows]
    base = [float(r["base_c2st"]) for r in rows]
    hyb = [num(r["c2st"]) for r in rows]
    scored = [i for i, h in enumerate(hyb) if h == h]
    sacc = [acc[i] for i in scored]
    shyb = [hyb[i] for i in scored]
    gain = [base[i] - hyb[i] for i in scored]
    print()
    print(f"all {len(rows)} rows: ρ(acceptance, base C2ST) = {spearman(acc, base):+.2f}; "
          f"over the {len(scored)} scored: ρ(acceptance, hybrid C2ST) = {spearman(sacc, shyb):+.2f}, "
          f"ρ(acceptance, base − hybrid C2ST) = {spearman(sacc, gain):+.2f}")
    ok = [w for w in within if w == w]
    if ok:
        print(f"within tasks: mean ρ(acceptance, base C2ST) = {statistics.fmean(ok):+.2f} over {len(ok)} tasks")
    better = sum(1 for g in gain if g > 0)
    print(f"hybrid below its base on {better} of {len(scored)} scored rows; mean base − hybrid = {statistics.fmean(gain):+.4f}")


if __name__ == "__main__":
    main()
