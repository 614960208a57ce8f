# shellcheck shell=bash
# vgpu-env.sh: run the CUDA backend on the virtual GPU (tools/vgpu, a PTX interpreter that
# cudarc loads as libcuda.so). Source it:
#     source tools/vgpu-env.sh
#     cargo run --release -- info                        # lists the virtual device
#     SUPTICKETS_REQUIRE_GPU=1 cargo test --release      # the CUDA tests run on it
# It builds tools/vgpu (quietly, into tools/vgpu/target) when needed, links the library as
# libcuda.so and libcuda.so.1 (the names cudarc 0.19 tries first) into
# tools/vgpu/target/lib, puts that folder first on LD_LIBRARY_PATH, and sources
# tools/nvrtc-env.sh so NVRTC compiles the kernels. Knobs (see tools/vgpu/README.md):
# VGPU_TRACE, VGPU_STATS, VGPU_LOG, VGPU_WORKERS, VGPU_ALLOC_FILL, VGPU_MEM_MB, VGPU_SM_COUNT,
# VGPU_NONSTICKY, VGPU_QUIET. Returns non-zero (without exiting your shell) on failure.

_vgpu_env() {
  local root vg lib log
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  vg="$root/tools/vgpu"
  lib="$vg/target/lib"
  mkdir -p "$vg/target"
  log="$vg/target/build.log"
  if ! cargo build --release --quiet --manifest-path "$vg/Cargo.toml" --target-dir "$vg/target" >"$log" 2>&1; then
    echo "vgpu-env: building tools/vgpu failed (see $log):" >&2
    tail -20 "$log" >&2
    return 1
  fi
  mkdir -p "$lib"
  ln -sf ../release/libvgpu.so "$lib/libcuda.so"
  ln -sf ../release/libvgpu.so "$lib/libcuda.so.1"
  # shellcheck source=tools/nvrtc-env.sh
  source "$root/tools/nvrtc-env.sh" >/dev/null || return 1
  case ":${LD_LIBRARY_PATH:-}:" in
    ":$lib:"*) ;;
    *) export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
  export VGPU_LIB_DIR="$lib"
  echo "vgpu-env: virtual GPU from $lib (libcuda.so -> tools/vgpu), NVRTC on LD_LIBRARY_PATH"
}
_vgpu_env
