#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent, quick when already done):
#  - Fashion-MNIST from Debian's `dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist/);
#  - the NVRTC and CUDA-runtime wheels from PyPI, so every kernel in kernels/ compiles in the tests
#    even on a machine with no GPU;
#  - Open MPI and libclang (apt), for `--features mpi` (data-parallel training, tools/test-mpi.sh).
set -euo pipefail
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "setup: installing dataset-fashion-mnist (apt)" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
if ! python3 -c 'import nvidia.cuda_nvrtc' 2>/dev/null; then
  echo "setup: installing the NVRTC wheels (pip)" >&2
  python3 -m pip install -q --disable-pip-version-check \
    nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79
fi
if ! command -v mpirun >/dev/null || [ ! -e /usr/include/x86_64-linux-gnu/mpi/mpi.h ] \
  || ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
  echo "setup: installing Open MPI and libclang (apt)" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenmpi-dev openmpi-bin \
    libclang-dev >/dev/null
fi
