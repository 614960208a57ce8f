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
# Every kernel- and block-level CUDA test against the virtual device, and one exact training
# step (CPU vs CUDA). The whole-run CUDA tests (tests/suptickets_run.rs
# cycles_leave_dense_layers_untouched_cuda, tests/gpu_train.rs cuda_training_matches_the_cpu_run)
# train for epochs, which takes the interpreter over ten minutes each: they run on real GPUs
# (tools/gpu-check.sh), and are named here so that nobody mistakes their absence for a pass.
start=$(date +%s)
cargo test --release "$@" \
  --test parity --test sparse_select --test suptickets_blocks \
  --test kernels_compile --test registry --test cuda_alloc
cargo test --release "$@" --test gpu_train one_rigl_step
echo "test-vgpu: CUDA suite on the virtual GPU in $(($(date +%s) - start)) s"
echo "test-vgpu: not run here (real GPU only): suptickets_run::cycles_leave_dense_layers_untouched_cuda, gpu_train::cuda_training_matches_the_cpu_run"
