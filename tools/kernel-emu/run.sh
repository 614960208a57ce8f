#!/usr/bin/env bash
# Builds and runs the CPU emulation of every kernel in kernels/*.cu (see emu.h, main.cpp):
# catches indexing and reduction bugs on machines without a GPU. Needs g++ with C++20.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/suptickets-kernel-emu
g++ -std=c++20 -O1 -pthread -Wall -Wno-unknown-pragmas -o "$out" "$here/main.cpp"
"$out"
