#!/usr/bin/env bash
# Data-parallel training on GPUs over NCCL: the check of tools/test-mpi.sh part 1 with
# `--device cuda` (one process per GPU: rank r uses cuda:<local rank>). Needs at least 2 GPUs
# and the NCCL library (libnccl.so.2, loaded at run time); skips, saying so, otherwise. The
# virtual GPU (tools/vgpu) provides no NCCL, so this test cannot run on it.
set -euo pipefail
cd "$(dirname "$0")/.."
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -lt 2 ]; then
  echo "test-nccl: SKIPPED: needs 2 GPUs, found ${gpus:-0}" >&2
  exit 0
fi
if ! ldconfig -p | grep -q 'libnccl.so'; then
  echo "test-nccl: SKIPPED: libnccl.so not found" >&2
  exit 0
fi
bash tools/setup.sh
source tools/nvrtc-env.sh
cargo build --release --features nccl --quiet
bin=target/release/suptickets
out=target/test-nccl
rm -rf "$out"
common=(--model resnet18 --width 0.125 --dataset fashion-mnist --limit-test 100 --batch-size 64
  --schedule constant --lr 0.05 --seed 1 --quiet --epochs 1 --limit-train 64 --method static
  --sparsity 0.8 --device cuda)
"$bin" train "${common[@]}" --out "$out/1p" >/dev/null
mpirun --allow-run-as-root -np 2 "$bin" train "${common[@]}" --sync-bn --out "$out/2p" >/dev/null
python3 tools/dist_compare.py "$out/1p" "$out/2p" --rtol 1e-4 --loss-rtol 1e-5
echo "test-nccl: ok" >&2
