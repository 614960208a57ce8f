#!/usr/bin/env python3
"""Dense training step, ours vs the PyTorch peer, side by side in one run.

For each model, runs alternately: the peer (`../shared/peer/peer_step.py`) and our
`examples/step_time`, each twice, with S1 and S2 timed steps (no inference). Reports
  - wall: the median per-step wall time each program prints (noisy on a shared machine);
  - cpu:  per-step process CPU time, (CPU(S2 run) - CPU(S1 run)) / (S2 - S1), divided by the
          thread count: on a quiet machine this is the wall time of a perfectly parallel step,
          and it is not inflated by other processes' load.
Usage: tools/peer_compare.py [--models vgg16,resnet18] [--s1 1] [--s2 4] [--rounds 1]
"""
import argparse, json, os, resource, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("--models", default="vgg16,resnet18")
ap.add_argument("--s1", type=int, default=1)
ap.add_argument("--s2", type=int, default=4)
ap.add_argument("--rounds", type=int, default=1)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--python", default=os.path.expanduser("~/peer-venv/bin/python"))
ap.add_argument("--peer", default=os.path.join(os.path.dirname(__file__), "../../shared/peer/peer_step.py"))
a = ap.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "step_time"], cwd=root, check=True)
ours_bin = os.path.join(root, "target/release/examples/step_time")


def run(cmd, env=None):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line), cpu


def peer(model, steps):
    j, cpu = run([a.python, a.peer, "--model", model, "--sparsity", "0", "--batch", "128",
                  "--threads", str(a.threads), "--steps", str(steps), "--warmup", "1", "--no-infer"])
    return j["train_ms_median"] / 1000.0, cpu


def ours(model, steps):
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    j, cpu = run([ours_bin, model, "128", str(steps), "1", "0"], env)
    return j["train_step_s_median"], cpu


rows = []
for model in a.models.split(","):
    res = {"peer": {"wall": [], "cpu": []}, "ours": {"wall": [], "cpu": []}}
    for _ in range(a.rounds):
        for name, fn in (("peer", peer), ("ours", ours)):
            w1, c1 = fn(model, a.s1)
            w2, c2 = fn(model, a.s2)
            res[name]["wall"] += [w1, w2]
            res[name]["cpu"].append((c2 - c1) / (a.s2 - a.s1) / a.threads)
    r = {k: {m: statistics.median(v[m]) for m in v} for k, v in res.items()}
    rows.append((model, r))
    print(json.dumps({"model": model, **r}), flush=True)

print("\n| model | peer wall s/step | ours wall s/step | wall ratio | peer CPU s/step ÷ threads | ours CPU s/step ÷ threads | CPU ratio |")
print("|---|---|---|---|---|---|---|")
for model, r in rows:
    p, o = r["peer"], r["ours"]
    print(f"| {model} | {p['wall']:.2f} | {o['wall']:.2f} | {o['wall'] / p['wall']:.2f} | {p['cpu']:.2f} | {o['cpu']:.2f} | {o['cpu'] / p['cpu']:.2f} |")
