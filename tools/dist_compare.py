#!/usr/bin/env python3
"""Compares two suptickets runs (tools/test-mpi.sh): the per-epoch training loss of log.jsonl,
every tensor of checkpoint.safetensors (weights, momenta, batch-norm buffers: max absolute
difference relative to the tensor's scale), and every mask (must be identical).

usage: dist_compare.py REFERENCE_RUN OTHER_RUN [--rtol R] [--loss-rtol R]
                        [--strict PREFIX --strict-rtol R]

--rtol: tensors (default 1e-3); --loss-rtol: per-epoch training loss (default: --rtol);
--strict: tensors whose name starts with PREFIX must agree within --strict-rtol;
--loss-only: compare the loss curve and the tensors' names and shapes only.
"""
import json
import struct
import sys
from array import array


def read_safetensors(path):
    """{name: (shape, values as array('f'))} of an F32 safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}"
        a, b = info["data_offsets"]
        vals = array("f")
        vals.frombytes(data[base + a : base + b])
        if sys.byteorder != "little":
            vals.byteswap()
        out[name] = (info["shape"], vals)
    return out


def read_log(run):
    with open(f"{run}/log.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    args = sys.argv[1:]
    def opt(name, default):
        if name in args:
            i = args.index(name)
            v = args[i + 1]
            del args[i : i + 2]
            return v
        return default

    rtol = float(opt("--rtol", 1e-3))
    loss_rtol = float(opt("--loss-rtol", rtol))
    strict = opt("--strict", None)
    strict_rtol = float(opt("--strict-rtol", 1e-5))
    loss_only = "--loss-only" in args
    if loss_only:
        args.remove("--loss-only")
    ref, other = args
    failures = []

    la, lb = read_log(ref), read_log(other)
    if len(la) != len(lb):
        failures.append(f"log: {len(la)} epochs vs {len(lb)}")
    for ea, eb in zip(la, lb):
        a, b = ea["train_loss"], eb["train_loss"]
        if abs(a - b) > loss_rtol * max(1.0, abs(a)):
            failures.append(f"epoch {ea['epoch']}: train loss {a} vs {b}")
        if ea["step"] != eb["step"]:
            failures.append(f"epoch {ea['epoch']}: step {ea['step']} vs {eb['step']}")
    losses = ", ".join(f"{e['train_loss']:.6f}/{o['train_loss']:.6f}" for e, o in zip(la, lb))

    ta = read_safetensors(f"{ref}/checkpoint.safetensors")
    tb = read_safetensors(f"{other}/checkpoint.safetensors")
    if set(ta) != set(tb):
        failures.append(f"tensors differ: {sorted(set(ta) ^ set(tb))[:5]}")
    worst, worst_name, masks, mask_entries = 0.0, "", 0, 0
    for name in sorted(set(ta) & set(tb)):
        (sa, va), (sb, vb) = ta[name], tb[name]
        if sa != sb:
            failures.append(f"{name}: shape {sa} vs {sb}")
            continue
        if loss_only:
            continue
        if name.endswith(".mask"):
            masks += 1
            mask_entries += len(va)
            diff = sum(1 for x, y in zip(va, vb) if x != y)
            if diff:
                failures.append(f"{name}: {diff} of {len(va)} mask entries differ")
            continue
        scale = max(1e-3, max((abs(x) for x in va), default=0.0))
        d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0) / scale
        if strict and name.startswith(strict) and d > strict_rtol:
            failures.append(f"{name}: relative difference {d:.3g} > {strict_rtol} (strict)")
        if d > worst:
            worst, worst_name = d, name
    if worst > rtol:
        failures.append(f"{worst_name}: max |difference| / max |value| = {worst:.3g} > {rtol}")
    print(
        f"compare {ref} vs {other}: train loss per epoch (ref/other) {losses}; "
        f"{len(ta)} tensors, worst relative difference {worst:.3g} ({worst_name}); "
        f"{masks} masks ({mask_entries} entries) identical"
        if not failures
        else f"compare {ref} vs {other}: FAILED"
    )
    for f in failures:
        print("  " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
