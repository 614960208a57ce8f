#!/usr/bin/env python3
"""Sparse training step, ours vs the PyTorch peer, side by side in one run.

For each configuration (model, sparsity, mask init) it alternates, ROUNDS times:
  - the peer (`../shared/peer/peer_step.py`): PyTorch, dense weights times a mask (ERK masks;
    the peer has no uniform option, and its step costs the same at any mask anyway);
  - ours (`suptickets bench --json --no-layers`): our dense step on the masked weights and our
    sparse step (`--sparse-kernels auto`) on the same masks, alternated inside the program.
and prints the medians and the ratios: ours sparse vs ours dense, ours sparse vs the peer
(training step and inference of the batch). Machines are noisy: run it on a quiet machine.

Usage: tools/sparse_bench_compare.py [--configs vgg16:0.95:uniform,vgg16:0.95:erk,vgg16:0.9:erk]
                                    [--rounds 2] [--steps 3] [--threads 2] [--no-peer]
"""
import argparse, json, os, statistics, subprocess

ap = argparse.ArgumentParser()
ap.add_argument("--configs", default="vgg16:0.95:uniform,vgg16:0.95:erk,vgg16:0.9:erk")
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--no-peer", action="store_true")
ap.add_argument("--python", default=os.path.expanduser("~/peer-venv/bin/python"))
ap.add_argument("--peer", default=os.path.join(os.path.dirname(__file__), "../../shared/peer/peer_step.py"))
a = ap.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
ours_bin = os.path.join(root, "target/release/suptickets")


def last_json(out):
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def peer(model, sparsity):
    out = subprocess.run([a.python, a.peer, "--model", model, "--sparsity", str(sparsity), "--batch", "128",
                          "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", "1"],
                         capture_output=True, text=True, check=True).stdout
    j = last_json(out)
    return j["train_ms_median"], j.get("infer_ms_median", float("nan"))


def ours(model, sparsity, init):
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    out = subprocess.run([ours_bin, "bench", "--model", model, "--sparsity", str(sparsity), "--init", init,
                          "--batch", "128", "--steps", str(a.steps), "--warmup", "1", "--no-layers", "--json"],
                         capture_output=True, text=True, check=True, env=env).stdout
    j = last_json(out)
    return j


rows = []
for cfg in a.configs.split(","):
    model, sparsity, init = cfg.split(":")
    sp = float(sparsity)
    res = {"peer_train": [], "peer_infer": [], "dense_train": [], "sparse_train": [], "dense_infer": [],
           "sparse_infer": [], "flop_reduction": None, "mem": None}
    for _ in range(a.rounds):
        if not a.no_peer:
            t, i = peer(model, sp)
            res["peer_train"].append(t)
            res["peer_infer"].append(i)
        j = ours(model, sp, init)
        res["dense_train"].append(j["dense"]["train_step_ms"])
        res["sparse_train"].append(j["sparse"]["train_step_ms"])
        res["dense_infer"].append(j["dense"]["inference_ms"])
        res["sparse_infer"].append(j["sparse"]["inference_ms"])
        res["flop_reduction"] = j["flop_reduction"]
        res["mem"] = j["sparse_weight_bytes"] / j["dense_weight_bytes"]
    med = {k: (statistics.median(v) if isinstance(v, list) and v else v) for k, v in res.items()}
    med["config"] = cfg
    rows.append(med)
    print(json.dumps(med), flush=True)

print("\n| model | sparsity | masks | FLOP reduction | CSR / dense memory | peer masked step ms | ours dense step ms | ours sparse step ms "
      "| sparse vs own dense | sparse vs peer | inference dense / sparse ms | inference speed-up |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    model, sparsity, init = r["config"].split(":")
    pt = r["peer_train"] if isinstance(r["peer_train"], float) else float("nan")
    print(f"| {model} | {sparsity} | {init} | {r['flop_reduction']:.1f}x | {100 * r['mem']:.1f}% | {pt:.0f} "
          f"| {r['dense_train']:.0f} | {r['sparse_train']:.0f} | {r['dense_train'] / r['sparse_train']:.2f}x "
          f"| {pt / r['sparse_train']:.2f}x | {r['dense_infer']:.0f} / {r['sparse_infer']:.0f} "
          f"| {r['dense_infer'] / r['sparse_infer']:.2f}x |")
