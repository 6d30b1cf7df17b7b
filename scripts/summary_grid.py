"""Builds bench-results/summary/: one journal with the newest row of every bench cell the project
has run, so that `gkl-gpu bench --report-only` draws one table and one C2ST-against-budget figure
per task over 10^3, 10^4 and 10^5 simulations.

Usage: python3 scripts/summary_grid.py [OUT]   (OUT defaults to bench-results/summary), then

  gkl-gpu bench --report-only --out OUT --budgets 1000,10000,100000 --observations 1-5 --seeds 3 \
      --methods npe,ratio,hybrid --tasks (the ten) --peer-python python3

The grid directories below are read in order, and a later one's row replaces an earlier one's row
of the same cell and observation (task, method, K, base gradient, budget, seed, observation): the
old flow's npe and hybrid rows of grid-1e3 and grid-1e4 give way to the new NSF's (grid-1e3-v2,
grid-1e4-v2), and the box tasks' hybrid rows of grid-1e4-v2 to the support-masked ones of
grid-1e4-v3. Rows of other cells are kept whatever directory they come from (ratio and the sbi
peers from grid-1e3 and grid-1e4, sir and lotka_volterra's peers from grid-1e4-v2, 10^5 from
grid-1e5). Each kept row's samples and reference file of the pair plots' observation are linked
into OUT (they are git-ignored), so the report can draw them. Every row's `source` says where it
came from in OUT/sources.csv.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench-results")
SOURCES = ["grid-1e3", "grid-1e3-v2", "grid-1e4", "grid-1e4-v2", "grid-1e4-v3", "grid-1e5"]
PLOT_OBSERVATION = 1


def key(r):
    return (r["task"], r["method"], r["contrastive"], r.get("base_gradient") or "detached",
            r["budget"], r["seed"], r["observation"])


def cell_name(r):
    """The bench's cell folder and sample file stem (src/bench/grid.rs, cell_name)."""
    bg = "_reparam" if r.get("base_gradient") == "reparameterized" else ""
    return f"{r['method']}_K{r['contrastive']}_n{r['budget']}_s{r['seed']}{bg}"


def link(src, dst):
    if not os.path.exists(src):
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "summary")
    os.makedirs(out, exist_ok=True)
    rows, source = {}, {}
    for d in SOURCES:
        path = os.path.join(ROOT, d, "journal.jsonl")
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows[key(r)] = r
                    source[key(r)] = d
    tmp = os.path.join(out, "journal.jsonl.tmp")
    with open(tmp, "w") as f:
        for k in sorted(rows, key=str):
            f.write(json.dumps(rows[k]) + "\n")
    os.replace(tmp, os.path.join(out, "journal.jsonl"))
    with open(os.path.join(out, "sources.csv"), "w") as f:
        f.write("task,method,contrastive,base_gradient,budget,seed,observation,source\n")
        for k in sorted(rows, key=str):
            f.write(",".join(str(v) for v in k) + f",{source[k]}\n")
    obs = PLOT_OBSERVATION
    for k, r in rows.items():
        if r["observation"] != obs or r["method"].startswith("sbi"):
            continue
        src = os.path.join(ROOT, source[k])
        name = f"{cell_name(r)}_obs{obs}.npy"
        link(os.path.join(src, "samples", r["task"], name), os.path.join(out, "samples", r["task"], name))
        ref = f"obs{obs}_n10000.npy"
        link(os.path.join(src, "references", r["task"], ref), os.path.join(out, "references", r["task"], ref))
    print(f"{len(rows)} rows from {len(SOURCES)} grids in {out}")


main()
