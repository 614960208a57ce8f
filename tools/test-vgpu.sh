#!/usr/bin/env bash
# The CUDA test suite on the virtual GPU (tools/vgpu, a PTX interpreter loaded as libcuda.so),
# with SUPTICKETS_REQUIRE_GPU=1 so that no CUDA test may skip. CI (.ci/run) runs it after
# tools/test.sh; on a machine with a real GPU, run `cargo test --release` with
# SUPTICKETS_REQUIRE_GPU=1 instead (or tools/gpu-check.sh from a pack).
#
#     bash tools/test-vgpu.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# shellcheck source=tools/vgpu-env.sh
source tools/vgpu-env.sh
export SUPTICKETS_REQUIRE_GPU=1
# The interpreter's own tests (hand-written PTX, NVRTC's PTX, the driver API).
cargo test --release --quiet --manifest-path tools/vgpu/Cargo.toml --target-dir tools/vgpu/target
# Every kernel- and block-level CUDA test against the virtual device, one exact training step
# (CPU vs CUDA), and two whole runs at a size the interpreter trains in minutes (2 steps an
# epoch of 4 images): CPU vs CUDA over RigL updates, a Sup-tickets cycle and the superposition
# (gpu_train), and a cycle leaving the dense layers untouched (suptickets_run).
start=$(date +%s)
cargo test --release "$@" \
  --test parity --test sparse_select --test suptickets_blocks \
  --test kernels_compile --test registry --test cuda_alloc
cargo test --release "$@" --test gpu_train
cargo test --release "$@" --test suptickets_run cycles_leave_dense_layers_untouched_cuda
echo "test-vgpu: CUDA suite on the virtual GPU in $(($(date +%s) - start)) s"
