#!/usr/bin/env bash
# Side-by-side dense training-step timing: our CPU step vs the PyTorch peer, alternating runs
# in one session (these machines are noisy). Needs PyTorch in ~/peer-venv (see ../shared/peer/README.md).
#   tools/peer-compare.sh [MODELS] [ROUNDS]      e.g. tools/peer-compare.sh "vgg16 resnet18" 2
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:-"vgg16 resnet18"}
rounds=${2:-2}
py=${PEER_PYTHON:-$HOME/peer-venv/bin/python}
peer=${PEER_DIR:-../shared/peer}
cargo build --release --example step_time -q
for r in $(seq "$rounds"); do
  for m in $models; do
    "$py" "$peer/peer_step.py" --model "$m" --sparsity 0 --batch 128 --threads 2 --steps 3 --warmup 1 2>/dev/null | sed 's/^/peer /'
    RAYON_NUM_THREADS=2 target/release/examples/step_time "$m" 128 3 1 | sed 's/^/ours /'
  done
done
