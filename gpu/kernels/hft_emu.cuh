// hft_emu.cuh - run the CUDA C kernels of gpu/kernels on the CPU (g++), for tests without a GPU.
//
// Included by hft_common.cuh only when __CUDACC__ is not defined (nvcc and NVRTC define it).
// It maps the CUDA built-ins the kernels use onto plain C++17:
//
//   __global__ / __device__ / __host__ / __forceinline__   -> plain (inline) functions
//   __shared__                                             -> function-local static storage
//   threadIdx, blockIdx, blockDim, gridDim                 -> variables set by the launcher
//   __syncthreads()                                        -> a barrier between fibers
//   atomicAdd, __clzll, __dp4a, __ldg                      -> sequential equivalents
//
// Execution model. A launch runs the blocks of the grid one after another. Every thread of a
// block is a fiber (ucontext) with its own stack, so each keeps its registers (locals) across
// __syncthreads(): the scheduler resumes thread 0, 1, ..., n-1 in turn, each runs until it
// reaches the barrier (or returns), and only when every live thread of the block has arrived
// does the next round start. Shared memory is one static array per kernel, shared by the
// fibers of the running block, exactly as on the device; blocks never run concurrently, so it
// is not reused while in use. Atomics are plain read-modify-writes (one OS thread). This
// honours every block-level pattern the kernels use (load tile -> barrier -> scan steps with
// barriers -> use), including kernels whose threads leave early, as long as every thread that
// is still running reaches the same barriers (the CUDA rule for __syncthreads in any case).
//
// Entry points. HFT_EMU_EXPORT(kernel) defines `extern "C" void hftemu_<kernel>(const
// hftemu_cfg*, void** args)`: the launch configuration and an array of pointers to the kernel's
// arguments (the cuLaunchKernel convention), unpacked with the kernel's own parameter types.
// The host backend (hftaccel.backends.gpu) generates one such line per kernel, compiles the
// .cu files with g++ into a shared library and calls it through ctypes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>
#include <ucontext.h>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct hftemu_cfg {
    unsigned grid[3];
    unsigned block[3];
};

namespace hftemu {

inline dim3 thread_idx, block_idx, block_dim, grid_dim;

struct Fiber {
    ucontext_t ctx;
    char* stack = nullptr;
    bool done = false;
};

constexpr std::size_t kStackBytes = 256 * 1024;

inline ucontext_t sched_ctx;
inline std::vector<Fiber> fibers;
inline unsigned current = 0;
inline void (*entry)(void*) = nullptr;
inline void* entry_arg = nullptr;

inline void trampoline() {
    entry(entry_arg);
    fibers[current].done = true;   // returning resumes uc_link: the scheduler
}

inline void syncthreads() {
    swapcontext(&fibers[current].ctx, &sched_ctx);
}

inline void set_thread(unsigned t) {
    thread_idx.x = t % block_dim.x;
    thread_idx.y = (t / block_dim.x) % block_dim.y;
    thread_idx.z = t / (block_dim.x * block_dim.y);
}

// Run one block: every thread a fiber, rounds between barriers.
inline void run_block(void (*fn)(void*), void* arg) {
    unsigned n = block_dim.x * block_dim.y * block_dim.z;
    if (fibers.size() < n) fibers.resize(n);
    entry = fn;
    entry_arg = arg;
    for (unsigned t = 0; t < n; ++t) {
        Fiber& f = fibers[t];
        if (!f.stack) f.stack = static_cast<char*>(std::malloc(kStackBytes));
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &sched_ctx;
        f.done = false;
        makecontext(&f.ctx, trampoline, 0);
    }
    for (;;) {
        bool alive = false;
        for (unsigned t = 0; t < n; ++t) {
            if (fibers[t].done) continue;
            current = t;
            set_thread(t);
            swapcontext(&sched_ctx, &fibers[t].ctx);
            alive = alive || !fibers[t].done;
        }
        if (!alive) break;
    }
}

template <class... A, std::size_t... I>
inline void call(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <class... A>
struct Bound {
    void (*k)(A...);
    void** args;
    static void run(void* self) {
        auto* b = static_cast<Bound*>(self);
        call(b->k, b->args, std::index_sequence_for<A...>{});
    }
};

template <class... A>
inline void launch(void (*k)(A...), const hftemu_cfg* cfg, void** args) {
    grid_dim = dim3(cfg->grid[0], cfg->grid[1], cfg->grid[2]);
    block_dim = dim3(cfg->block[0], cfg->block[1], cfg->block[2]);
    Bound<A...> b{k, args};
    for (unsigned z = 0; z < grid_dim.z; ++z)
        for (unsigned y = 0; y < grid_dim.y; ++y)
            for (unsigned x = 0; x < grid_dim.x; ++x) {
                block_idx = dim3(x, y, z);
                run_block(&Bound<A...>::run, &b);
            }
}

}  // namespace hftemu

#define threadIdx (::hftemu::thread_idx)
#define blockIdx (::hftemu::block_idx)
#define blockDim (::hftemu::block_dim)
#define gridDim (::hftemu::grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() ::hftemu::syncthreads()

inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    *p = old + v;
    return old;
}

inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}

// Four signed 8-bit products of a and b, summed onto c (sm_61+ dp4a).
inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; ++k)
        c += static_cast<int>(static_cast<signed char>(a >> (8 * k))) *
             static_cast<int>(static_cast<signed char>(b >> (8 * k)));
    return c;
}

template <class T>
inline T __ldg(const T* p) { return *p; }

#define HFT_EMU_EXPORT(k)                                                        \
    extern "C" void hftemu_##k(const hftemu_cfg* cfg, void** args) {              \
        ::hftemu::launch(&k, cfg, args);                                           \
    }
