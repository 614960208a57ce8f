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
# Every product test binary that exercises CUDA, against the virtual device.
start=$(date +%s)
cargo test --release "$@" \
  --test parity --test sparse_select --test suptickets_blocks --test suptickets_run \
  --test gpu_train --test kernels_compile --test registry
echo "test-vgpu: CUDA suite on the virtual GPU in $(($(date +%s) - start)) s"
