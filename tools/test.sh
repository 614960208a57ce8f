#!/usr/bin/env bash
# The test command (README, and .ci/run calls it): set-up, NVRTC on the library path, all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# shellcheck source=tools/nvrtc-env.sh
source tools/nvrtc-env.sh
cargo test --release "$@"
