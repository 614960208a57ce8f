#!/usr/bin/env bash
# The test command (README, and .ci/run calls it): set-up, NVRTC on the library path, all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# shellcheck source=tools/nvrtc-env.sh
source tools/nvrtc-env.sh
cargo test --release "$@"
# The CPU kernels again with every recycled output buffer poisoned with NaN
# (src/backend/cpu/buffers.rs): a kernel that reads its output before writing it fails here.
SUPTICKETS_BUFFER_POISON=1 cargo test --release --lib --test gradcheck --test sparse_kernels --test masked_step --test overfit
