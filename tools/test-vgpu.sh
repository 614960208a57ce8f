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
targets=(parity sparse_select suptickets_blocks kernels_compile registry cuda_alloc csr_cache)
# Every test target that asks for a GPU (tests/common's helpers) must be run here.
for f in $(grep -rlE "have_gpu|gpu_device|gpu_required|skip_no_gpu" tests --include='*.rs'); do
  t=${f#tests/}
  t=${t%%/*}
  t=${t%.rs}
  case " common ${targets[*]} gpu_train suptickets_run " in
    *" $t "*) ;;
    *) echo "test-vgpu: $f uses a GPU but its target '$t' is not run here" >&2; exit 1 ;;
  esac
done
cargo test --release "$@" $(printf -- '--test %s ' "${targets[@]}")
cargo test --release "$@" --test gpu_train
cargo test --release "$@" --test suptickets_run cycles_leave_dense_layers_untouched_cuda
echo "test-vgpu: CUDA suite on the virtual GPU in $(($(date +%s) - start)) s"
