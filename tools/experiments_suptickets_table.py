"""Tables of tools/experiments-suptickets.sh: mean ± sample std over seeds of the compare runs,
and the superposition ablation. Usage: experiments_suptickets_table.py OUT METHODS SPARSITIES SEEDS."""
import json
import os
import statistics
import sys

out, methods, sparsities, seeds = sys.argv[1], *(a.split() for a in sys.argv[2:5])
LABEL = {"rigl": "RigL", "granet": "GraNet", "set": "SET", "static": "static", "snip": "SNIP"}


def load(path):
    with open(os.path.join(path, "report.json")) as f:
        return json.load(f)


def ms(xs, scale=1.0, digits=2):
    xs = [scale * x for x in xs]
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


print("| method | sparsity | seeds | run | test acc (%) | NLL | ECE | best single ticket (%) | "
      "ensemble (%) | train FLOPs (x dense) | test FLOPs (x dense) | wall (s) |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
wins = []
for m in methods:
    for s in sparsities:
        base, sup, done = [], [], []
        for seed in seeds:
            d = os.path.join(out, f"{m}-{s}-seed{seed}")
            try:
                b, u = load(os.path.join(d, "base")), load(os.path.join(d, "suptickets"))
            except (OSError, ValueError, KeyError):
                continue
            if b["finished"] and u["finished"]:
                base.append(b), sup.append(u), done.append(seed)
        if not done:
            continue
        n = ",".join(done)
        for name, rs in (("base", base), ("+ Sup-tickets", sup)):
            best = ens = ""
            if rs is sup:
                best = ms([max(t["accuracy"] for t in r["tickets"]) for r in rs], 100)
                if all(r.get("ensemble") for r in rs):
                    ens = ms([r["ensemble"]["accuracy"] for r in rs], 100)
            print(f"| {LABEL.get(m, m)} | {s} | {n} | {name} "
                  f"| {ms([r['test_accuracy'] for r in rs], 100)} "
                  f"| {ms([r['test_nll'] for r in rs], 1, 4)} | {ms([r['test_ece'] for r in rs], 1, 4)} "
                  f"| {best} | {ens} | {ms([r['train_flops_multiple'] for r in rs], 1, 4)} "
                  f"| {ms([r['test_flops_multiple'] for r in rs], 1, 4)} "
                  f"| {ms([r['wall_seconds'] for r in rs], 1, 0)} |")
        diffs = [100 * (u["test_accuracy"] - b["test_accuracy"]) for b, u in zip(base, sup)]
        wins.append((m, s, n, diffs))

print()
print("Per-seed difference, Sup-tickets ultimate minus base (accuracy points):")
print()
for m, s, n, diffs in wins:
    per = ", ".join(f"{d:+.2f}" for d in diffs)
    print(f"- {LABEL.get(m, m)} {s} (seeds {n}): {per}; mean {statistics.mean(diffs):+.2f}")

print()
print("Superposition ablation (RigL, sparsity 0.9, seed 0; same training, only the superposition differs):")
print()
print("| averaging | re-prune | BN | ultimate acc (%) | NLL | ECE | density | tickets W_0, W_1, W_2 (%) | command |")
print("|---|---|---|---:|---:|---:|---:|---|---|")
rows = [("CIA (compare run)", os.path.join(out, "rigl-0.9-seed0", "suptickets"))]
rows += [(k, os.path.join(out, f"ablation-{k}")) for k in ("caa", "cima", "bu", "layerwise")]
for label, d in rows:
    try:
        r = load(d)
    except (OSError, ValueError):
        continue
    if not r["finished"]:
        continue
    u = r["ultimate"]
    cmd = open(os.path.join(os.path.dirname(d) if label.startswith("CIA") else d, "command.txt")).read().strip()
    tickets = ", ".join(f"{100 * t['accuracy']:.2f}" for t in r["tickets"])
    print(f"| {u['averaging'].upper()} | {u['reprune']} | {u['bn'].upper()} | {100 * u['accuracy']:.2f} "
          f"| {u['nll']:.4f} | {u['ece']:.4f} | {u['density']:.4f} | {tickets} | `{cmd}` |")
