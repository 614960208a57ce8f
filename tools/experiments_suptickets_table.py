"""Tables of tools/experiments-suptickets.sh: per seed and mean ± sample std over the seeds
that finished, base vs ultimate ticket vs tickets vs ensemble, and the superposition ablation.
Usage: experiments_suptickets_table.py OUT METHODS SEEDS."""
import json
import os
import statistics
import sys

out, methods, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
LABEL = {"rigl": "RigL", "granet": "GraNet", "set": "SET"}


def load(path):
    with open(path) as f:
        return json.load(f)


def ms(xs, digits=2):
    if not xs:
        return ""
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


print("| method | seed | base (%) | ultimate (%) | ultimate − base | tickets W_0..W_K (%) | best ticket (%) "
      "| ultimate − best ticket | ensemble (%) | base / ultimate NLL | wall base / sup (s) |")
print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|")
for m in methods:
    cols = {k: [] for k in ("base", "ult", "d_base", "best", "d_best", "ens")}
    done = []
    for seed in seeds:
        d = os.path.join(out, f"{m}-0.9-seed{seed}")
        try:
            b, s = load(f"{d}/base/report.json"), load(f"{d}/suptickets/report.json")
        except OSError:
            continue
        done.append(seed)
        t = [100 * x["accuracy"] for x in s["tickets"]]
        base, ult, ens = 100 * b["test_accuracy"], 100 * s["test_accuracy"], 100 * s["ensemble"]["accuracy"]
        for k, v in zip(cols, (base, ult, ult - base, max(t), ult - max(t), ens)):
            cols[k].append(v)
        print(f"| {LABEL[m]} 0.9 | {seed} | {base:.2f} | {ult:.2f} | {ult - base:+.2f} | "
              f"{', '.join(f'{x:.2f}' for x in t)} | {max(t):.2f} | {ult - max(t):+.2f} | {ens:.2f} | "
              f"{b['test_nll']:.4f} / {s['test_nll']:.4f} | {b['wall_seconds']:.0f} / {s['wall_seconds']:.0f} |")
    if len(done) > 1:
        print(f"| {LABEL[m]} 0.9 | mean ± std ({','.join(done)}) | {ms(cols['base'])} | {ms(cols['ult'])} | "
              f"{ms(cols['d_base'])} | | {ms(cols['best'])} | {ms(cols['d_best'])} | {ms(cols['ens'])} | | |")

print()
print("Superposition ablation over the same saved tickets (`suptickets superpose`; CIA + AV global "
      "is the run itself):")
print()
print("| method | seed | averaging | re-prune | BN | ultimate (%) | NLL | ECE | density |")
print("|---|---:|---|---|---|---:|---:|---:|---:|")
for m in methods:
    for seed in seeds:
        p = os.path.join(out, f"{m}-0.9-seed{seed}", "suptickets", "ablation.jsonl")
        if not os.path.exists(p):
            continue
        for line in open(p):
            r = json.loads(line)
            x = r["metrics"]
            print(f"| {LABEL[m]} 0.9 | {seed} | {r['average'].upper()} | {r['reprune']} | {r['bn'].upper()} | "
                  f"{100 * x['accuracy']:.2f} | {x['nll']:.4f} | {x['ece']:.4f} | {r['density']:.4f} |")
