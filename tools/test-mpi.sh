#!/usr/bin/env bash
# Data-parallel training over MPI (CI runs it): builds with `--features mpi`, then checks that
#  1. `mpirun -np 2 ... --sync-bn` at global batch 64 computes one process's step at batch 64:
#     the same loss, every weight, momentum and batch-norm statistic within 1e-4 of its tensor's
#     scale (the top layer within 1e-5), masks identical;
#  2. a RigL run with mask updates on 2 processes keeps the masks bit-identical across ranks
#     (checked by the run itself after every topology change: `mask_checks` in the report),
#     sends only the active gradient entries on ordinary steps and the dense gradient on update
#     steps, and follows the one-process loss curve;
#  3. a 2-process run stopped after one epoch resumes on 1 process (no per-rank state).
# Needs Open MPI (tools/setup.sh installs it); runs as root with --allow-run-as-root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --release --features mpi --quiet
bin=target/release/suptickets
out=target/test-mpi
rm -rf "$out"
mkdir -p "$out"
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
common=(--model resnet18 --width 0.125 --dataset fashion-mnist --limit-test 100 --batch-size 64
  --schedule constant --lr 0.05 --seed 1 --quiet)

echo "test-mpi: 1. one step, 2 processes with --sync-bn vs 1 process" >&2
one=(--epochs 1 --limit-train 64 --method static --sparsity 0.8)
"$bin" train "${common[@]}" "${one[@]}" --out "$out/one-1p" >/dev/null
"${mpi[@]}" "$bin" train "${common[@]}" "${one[@]}" --sync-bn --out "$out/one-2p" >/dev/null
python3 tools/dist_compare.py "$out/one-1p" "$out/one-2p" --rtol 1e-4 --loss-rtol 1e-6 \
  --strict linear. --strict-rtol 1e-5

echo "test-mpi: 2. RigL with mask updates, 2 processes vs 1 process" >&2
rigl=(--epochs 2 --limit-train 256 --method rigl --sparsity 0.8 --update-interval 2)
"$bin" train "${common[@]}" "${rigl[@]}" --out "$out/rigl-1p" >/dev/null
"${mpi[@]}" "$bin" train "${common[@]}" "${rigl[@]}" --sync-bn --out "$out/rigl-2p" >/dev/null
python3 - "$out/rigl-1p" "$out/rigl-2p" <<'PY'
import json, sys
a = [json.loads(l) for l in open(f"{sys.argv[1]}/log.jsonl")]
b = [json.loads(l) for l in open(f"{sys.argv[2]}/log.jsonl")]
rep = json.load(open(f"{sys.argv[2]}/report.json"))
dp = rep["data_parallel"]
t = dp["traffic"]
assert dp["processes"] == 2 and dp["sync_bn"], dp
assert dp["mask_checks"] >= 4, f"masks compared only {dp['mask_checks']} times"
assert t["sparse_steps"] > 0 and t["dense_steps"] > 0, t
sparse = t["sparse_bytes"] / t["sparse_steps"]
dense = t["dense_bytes"] / t["dense_steps"]
assert dense == t["full_gradient_bytes"], t
assert sparse < 0.5 * dense, f"sparse steps send {sparse} B, dense {dense} B"
for x, y in zip(a, b):
    assert abs(x["train_loss"] - y["train_loss"]) < 0.05 * x["train_loss"], (x, y)
print(f"test-mpi: RigL on 2 processes: masks equal across ranks at {dp['mask_checks']} checks; "
      f"{sparse:.0f} B per sparse step vs {dense:.0f} B per dense step; "
      f"loss 1p {[round(e['train_loss'], 4) for e in a]} 2p {[round(e['train_loss'], 4) for e in b]}")
PY

echo "test-mpi: 3. 2 processes for epoch 1, then resumed on 1 process" >&2
"${mpi[@]}" "$bin" train "${common[@]}" "${rigl[@]}" --sync-bn --stop-after 1 --out "$out/resume" >/dev/null
"$bin" train --resume "$out/resume" --quiet >/dev/null
python3 tools/dist_compare.py "$out/rigl-1p" "$out/resume" --loss-only --loss-rtol 0.05
echo "test-mpi: ok" >&2
