// emu.h: runs the CUDA kernels of kernels/*.cu on the CPU, one OS thread per CUDA thread, to
// check their indexing and reductions on machines without a GPU (tools/kernel-emu/run.sh).
// Blocks run one after another, so `__shared__` can be a function-local `static`; threads of a
// block meet at a std::barrier (__syncthreads), lanes of a warp at a per-warp barrier
// (__shfl_down_sync). Slow, and only for small launches; not a substitute for the GPU parity
// tests, which also exercise the Rust launch code.
#pragma once
#include <barrier>
#include <math.h>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static

struct EmuBlock {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<float> lanes;  // one slot per thread, for shuffles
};
inline EmuBlock* emu_block = nullptr;

inline void __syncthreads() { emu_block->block->arrive_and_wait(); }

inline float __shfl_down_sync(unsigned, float v, int o) {
    const unsigned t = threadIdx.x, warp = t / 32, lane = t % 32;
    emu_block->lanes[t] = v;
    emu_block->warps[warp]->arrive_and_wait();
    const float r = lane + o < 32 ? emu_block->lanes[t + o] : v;
    emu_block->warps[warp]->arrive_and_wait();
    return r;
}

inline float __int_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
using std::min;

// Runs `kernel()` (a lambda calling the kernel with its arguments) over grid x block threads.
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = block;
    const unsigned nt = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                EmuBlock b;
                b.block = std::make_unique<std::barrier<>>(nt);
                for (unsigned w = 0; w < (nt + 31) / 32; ++w)
                    b.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w)));
                b.lanes.assign(nt, 0.0f);
                emu_block = &b;
                std::vector<std::thread> ts;
                for (unsigned t = 0; t < nt; ++t)
                    ts.emplace_back([&, t] {
                        threadIdx = dim3{t, 0, 0};
                        blockIdx = dim3{bx, by, bz};
                        kernel();
                    });
                for (auto& th : ts) th.join();
            }
}
