#!/usr/bin/env bash
# gpu-pack.sh: packs what tools/gpu-check.sh needs on a GPU machine that has no cargo into .gpu/
# (git-ignored): the release binary, the test executables that exercise CUDA, Fashion-MNIST if
# installed, and optionally a PyTorch peer script for side-by-side timings.
#
#   bash tools/gpu-pack.sh                     # then, on the GPU machine: bash tools/gpu-check.sh
#   PEER_STEP=/path/to/peer_step.py bash tools/gpu-pack.sh
#
# A device call carries at most 64 MiB, so only the CUDA test binaries travel.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
rm -rf .gpu
mkdir -p .gpu/bin .gpu/tests .gpu/data .gpu/peer

cargo build --release --bins --quiet
cargo test --release --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
keep = {"kernels_compile", "parity", "cuda_alloc", "registry", "sparse_select", "suptickets_blocks", "suptickets_run", "gpu_train"}
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") \
            and m.get("executable") and m["target"]["name"] in keep:
        print(m["executable"])' >.gpu/tests.list
while read -r t; do cp "$t" .gpu/tests/; done <.gpu/tests.list
cp target/release/suptickets .gpu/bin/
strip .gpu/bin/* .gpu/tests/* 2>/dev/null || true
if [ -d /usr/share/datasets/fashion-mnist ]; then cp /usr/share/datasets/fashion-mnist/*.gz .gpu/data/; fi
if [ -n "${PEER_STEP:-}" ]; then cp "$PEER_STEP" .gpu/peer/peer_step.py; fi
size=$(du -sm .gpu | cut -f1)
echo "packed .gpu/: ${size} MiB ($(wc -l <.gpu/tests.list) test executables)"
[ "$size" -lt 60 ] || { echo "gpu-pack: ${size} MiB is over what a device call can carry" >&2; exit 1; }
