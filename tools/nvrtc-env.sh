# shellcheck shell=bash
# nvrtc-env.sh: makes NVRTC findable by cudarc's dynamic loader. Source it (CI does):
#     source tools/nvrtc-env.sh
# cudarc 0.19 dlopen()s, among other names, `libnvrtc.so`, `libnvrtc.so.12` and
# `libnvrtc.so.<major>`, searched on LD_LIBRARY_PATH (cargo's `[env]` cannot set that for test
# binaries, so it has to be exported by the shell). Where NVRTC comes from, first found wins:
#   1. $NVRTC_LIB_DIR, if set (a folder holding libnvrtc.so*);
#   2. the pip wheel `nvidia-cuda-nvrtc-cu12` (pip install nvidia-cuda-nvrtc-cu12==12.9.86):
#      <site-packages>/nvidia/cuda_nvrtc/lib (ships libnvrtc.so.12, no unversioned name);
#   3. a CUDA toolkit: $CUDA_HOME/lib64, /usr/local/cuda/lib64.
# It also links the libraries into target/nvrtc-lib/ (adding the unversioned `libnvrtc.so`
# name) and puts that folder first, so any of cudarc's candidate names resolves. Prints what it
# found; returns non-zero (without exiting your shell) when nothing was found.

_nvrtc_env() {
  local root dir="" cand py
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  for cand in "${NVRTC_LIB_DIR:-}" \
    "$(for py in python3 python; do command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import nvidia.cuda_nvrtc as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null &&
      break; done)" \
    "${CUDA_HOME:+$CUDA_HOME/lib64}" /usr/local/cuda/lib64; do
    if [ -n "$cand" ] && ls "$cand"/libnvrtc.so* >/dev/null 2>&1; then
      dir=$cand
      break
    fi
  done
  if [ -z "$dir" ]; then
    echo "nvrtc-env: NVRTC not found; pip install nvidia-cuda-nvrtc-cu12==12.9.86, or set NVRTC_LIB_DIR" >&2
    return 1
  fi
  local link="$root/target/nvrtc-lib" f main=""
  mkdir -p "$link"
  for f in "$dir"/libnvrtc*.so*; do
    ln -sf "$f" "$link/"
    case "$(basename "$f")" in libnvrtc.so.[0-9]*) [ -z "$main" ] && main=$f ;; esac
  done
  [ -e "$dir/libnvrtc.so" ] || { [ -n "$main" ] && ln -sf "$main" "$link/libnvrtc.so"; }
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$link:"*) ;;
    *) export LD_LIBRARY_PATH="$link:$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
  echo "nvrtc-env: NVRTC from $dir (linked in $link)"
}
_nvrtc_env
