#!/usr/bin/env python3
"""Normalises and compares the outputs of tools/regression-check.sh.

    regression_check.py normalise RUNS_DIR RECORDING_DIR   # one JSON file per run
    regression_check.py compare A B                          # bit-for-bit diff of two recordings

A run's recording holds report.json and log.jsonl without their wall-clock and throughput
fields, config.toml, the stdout of the program's --json commands, and for every
*.safetensors file the metadata (without wall_seconds) and a SHA-256 of each tensor's bytes
(with its dtype and shape). Floats are compared through their JSON text, which Python writes
with round-trip precision, so "identical" means bit for bit.
"""
import hashlib
import json
import os
import struct
import sys

# Fields that measure time or speed, not results.
REPORT_DROP = {"wall_seconds", "images_per_sec"}
LOG_DROP = {"images_per_sec", "seconds"}
META_DROP = {"wall_seconds"}


def safetensors_digest(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8 : 8 + n])
    data = buf[8 + n :]
    meta = header.pop("__metadata__", {}) or {}
    meta_out = {}
    for k, v in sorted(meta.items()):
        if k in META_DROP:
            continue
        try:
            v = json.loads(v)
        except (ValueError, TypeError):
            pass
        if isinstance(v, dict):
            v = {kk: vv for kk, vv in v.items() if kk not in META_DROP}
        meta_out[k] = v
    tensors = {}
    for name, t in sorted(header.items()):
        a, b = t["data_offsets"]
        tensors[name] = {
            "dtype": t["dtype"],
            "shape": t["shape"],
            "sha256": hashlib.sha256(data[a:b]).hexdigest(),
        }
    return {"metadata": meta_out, "tensors": tensors}


def normalise_run(run_dir):
    rec = {}
    rp = os.path.join(run_dir, "report.json")
    if os.path.exists(rp):
        rep = json.load(open(rp))
        for k in REPORT_DROP:
            rep.pop(k, None)
        rec["report.json"] = rep
    lp = os.path.join(run_dir, "log.jsonl")
    if os.path.exists(lp):
        rec["log.jsonl"] = [
            {k: v for k, v in json.loads(line).items() if k not in LOG_DROP}
            for line in open(lp)
            if line.strip()
        ]
    cp = os.path.join(run_dir, "config.toml")
    if os.path.exists(cp):
        rec["config.toml"] = open(cp).read()
    for root, _, files in os.walk(run_dir):
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, run_dir)
            if f.endswith(".safetensors"):
                rec[rel] = safetensors_digest(p)
            elif f.endswith(".stdout.json"):
                # stdout of `eval --json` / `superpose --json` (paths relative to the scratch dir)
                rec[rel] = json.load(open(p))
            elif f == "exit-status":
                rec[rel] = open(p).read().strip()
    return rec


def normalise(runs_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(runs_dir)):
        d = os.path.join(runs_dir, name)
        if os.path.isdir(d):
            with open(os.path.join(out_dir, name + ".json"), "w") as f:
                json.dump(normalise_run(d), f, indent=1, sort_keys=True)
                f.write("\n")


def diff(a, b, path, out):
    if type(a) is not type(b):
        out.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}/{k}: only in the second")
            elif k not in b:
                out.append(f"{path}/{k}: only in the first")
            else:
                diff(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b and not (a != a and b != b):  # NaN == NaN here
        out.append(f"{path}: {a!r} != {b!r}")


def compare(a_dir, b_dir):
    names = sorted(set(os.listdir(a_dir)) | set(os.listdir(b_dir)))
    bad = 0
    for n in names:
        pa, pb = os.path.join(a_dir, n), os.path.join(b_dir, n)
        if not os.path.exists(pa) or not os.path.exists(pb):
            print(f"{n}: only in {'the second' if not os.path.exists(pa) else 'the first'}")
            bad += 1
            continue
        out = []
        diff(json.load(open(pa)), json.load(open(pb)), n, out)
        if out:
            bad += 1
            print(f"{n}: {len(out)} difference(s)")
            for line in out[:40]:
                print("  " + line)
        else:
            print(f"{n}: identical")
    print(f"{len(names) - bad} of {len(names)} runs identical")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "normalise":
        normalise(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
