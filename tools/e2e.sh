#!/usr/bin/env bash
# End-to-end check (CI runs it after the tests): `train` one epoch on a Fashion-MNIST subset,
# then `eval` its checkpoint, and require that eval reproduces the report's test metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/e2e-run
rm -rf "$out"
cargo build --release --quiet
bin=target/release/suptickets
"$bin" train --model resnet18 --width 0.125 --dataset fashion-mnist --epochs 1 \
  --limit-train 8192 --limit-test 1000 --schedule constant --lr 0.05 --seed 1 --out "$out" --quiet
"$bin" eval --checkpoint "$out" --json >"$out/eval.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rep = json.load(open(f"{out}/report.json"))
ev = json.load(open(f"{out}/eval.json"))
for key in ("test_accuracy", "test_nll", "test_ece"):
    a, b = rep[key], ev[key]
    assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), f"{key}: report {a} vs eval {b}"
assert rep["test_accuracy"] > 0.3, f"no learning: {rep['test_accuracy']}"
print(f"e2e: train + eval agree: accuracy {rep['test_accuracy']:.4f}, NLL {rep['test_nll']:.4f}, ECE {rep['test_ece']:.4f}")
PY
