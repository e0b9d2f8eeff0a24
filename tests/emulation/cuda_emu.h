// cuda_emu.h: just enough of CUDA for g++ to compile fcn/ops/kernels/fused.cu, unchanged, as host code.
//
// Execution model (see docs/gpu.md for what this does and does not check):
// - A launch runs its blocks one after another, in an order the caller may choose (natural, reversed, shuffled);
//   each block is run by blockDim real threads (std::thread), so races inside a block are real races that
//   ThreadSanitizer can see. Blocks never run at the same time, so `__shared__` is a function-local static.
// - threadIdx/blockIdx/blockDim/gridDim are thread-locals of the worker threads.
// - __syncthreads is a barrier over the block that aborts, naming the line, when threads of one block wait at
//   different __syncthreads (divergence) or some wait while others have left the kernel (deadlock).
// - Warp shuffles exchange values among the 32 lanes of a warp with CUDA's semantics: for up/down/xor a source
//   lane outside the warp gives the caller its own value, __shfl_sync wraps it modulo 32. Only the full mask
//   and width 32 are emulated (a partial mask aborts).
// - atomics are std::atomic_ref, __threadfence a sequentially consistent fence.
#pragma once

#include <math.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

// -- qualifiers: no address spaces on the host --------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __grid_constant__
#define __launch_bounds__(...)
// one block at a time: a static local is the block's shared memory
#define __shared__ static

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// CUDA aligns uint4 to 16 bytes; the 16-byte gather relies on it
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};
static_assert(sizeof(uint4) == 16 && alignof(uint4) == 16, "uint4 must be 16 bytes, 16-aligned");

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

namespace cuda_emu {

[[noreturn]] inline void die(const char* file, int line, const char* what) {
    std::fprintf(stderr, "cuda_emu: %s:%d: %s\n", file, line, what);
    std::fflush(stderr);
    std::abort();
}

// A barrier over `n` threads that knows which source line each waiter called it from and how many threads have
// left the kernel, so it aborts instead of hanging on divergence or deadlock. `blocked` counts the block's threads
// that wait anywhere (any barrier, or the end of the block): when all of them do, none can release the others.
// Waiters sleep on an atomic generation (a futex), not on a condition variable: no convoy on the mutex.
class Barrier {
  public:
    void reset(unsigned int n, std::atomic<unsigned int>* blocked, unsigned int threads) {
        n_ = n;
        waiting_ = exited_ = sleepers_ = 0;
        blocked_ = blocked;
        threads_ = threads;
    }

    void wait(const char* file, int line, const char* what) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (exited_ > 0) die(file, line, message(what, "reached after other threads left the kernel"));
        if (waiting_ == 0) {
            line_ = line;
            file_ = file;
            what_ = what;
        } else if (line != line_) {
            std::snprintf(text_, sizeof text_, "divergent %s: other threads wait at line %d", what, line_);
            die(file, line, text_);
        }
        if (++waiting_ == n_) {
            release();
            return;
        }
        sleep(lock, file, line, what);
    }

    // The calling thread has left the kernel; `join`: wait until every thread has (the end of a block).
    void leave(bool join) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (waiting_ > 0) die(file_, line_, message(what_, "waited at by some threads while others left"));
        if (++exited_ == n_) {
            release();
            return;
        }
        if (join) sleep(lock, __FILE__, __LINE__, "end of block");
    }

  private:
    void release() {
        blocked_->fetch_sub(sleepers_);
        waiting_ = exited_ = sleepers_ = 0;
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();
    }

    void sleep(std::unique_lock<std::mutex>& lock, const char* file, int line, const char* what) {
        const unsigned int generation = generation_.load(std::memory_order_relaxed);
        ++sleepers_;
        if (blocked_->fetch_add(1) + 1 == threads_) die(file, line, message(what, "waited at by every thread"));
        lock.unlock();
        while (generation_.load(std::memory_order_acquire) == generation) generation_.wait(generation);
    }

    const char* message(const char* what, const char* how) {
        std::snprintf(text_, sizeof text_, "deadlock: %s %s (%u of %u threads here, %u left the kernel)", what,
                      how, waiting_, n_, exited_);
        return text_;
    }

    std::mutex mutex_;
    std::atomic<unsigned int> generation_{0};
    std::atomic<unsigned int>* blocked_ = nullptr;
    unsigned int n_ = 0, waiting_ = 0, exited_ = 0, sleepers_ = 0, threads_ = 0;
    int line_ = -1;
    const char* file_ = __FILE__;
    const char* what_ = "barrier";
    char text_[256];
};

// Per launch: the block's barrier, and for each warp a barrier and two exchange slots per lane (alternating, so
// one barrier per shuffle is enough: a slot is written again only after every lane has passed the next shuffle).
struct Block {
    Barrier block;
    std::vector<Barrier> warps;
    std::vector<std::uint64_t> slots;  // [parity][thread]
    std::vector<unsigned char> parity;  // per thread: which slot its next shuffle uses
    std::atomic<unsigned int> blocked{0};
    unsigned int threads = 0;
};

inline thread_local Block* current = nullptr;

inline unsigned int linear_thread() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

// src(lane) -> the lane to read; -1 or >= 32: out of range, the caller keeps its value
template <typename T, typename Src>
T shuffle(unsigned int mask, T value, Src src, const char* file, int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    Block& b = *current;
    const unsigned int tid = linear_thread();
    const unsigned int lane = tid & 31u, warp = tid >> 5;
    if (mask != 0xffffffffu) die(file, line, "warp shuffle with a partial mask is not emulated");
    if ((warp + 1) * 32u > b.threads) die(file, line, "warp shuffle with the full mask in a partial warp");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    std::uint64_t* slots = &b.slots[b.parity[tid] * b.threads];
    b.parity[tid] ^= 1u;
    slots[tid] = bits;
    b.warps[warp].wait(file, line, "warp shuffle");
    const int from = src((int)lane);
    T result = value;
    if (from >= 0 && from < 32) std::memcpy(&result, &slots[warp * 32u + (unsigned int)from], sizeof(T));
    return result;
}

inline void syncthreads(const char* file, int line) { current->block.wait(file, line, "__syncthreads"); }

// Block order of the following launches: 0 in order, 1 reversed, 2 shuffled with `seed`.
inline int block_order = 0;
inline unsigned int block_seed = 0;
inline std::mutex launch_mutex;

// Runs `body` on every thread of every block; 0, or CUDA's cudaErrorInvalidConfiguration (9).
inline int launch(const unsigned int* grid, const unsigned int* block, const std::function<void()>& body) {
    const dim3 g{grid[0], grid[1], grid[2]}, t{block[0], block[1], block[2]};
    const unsigned long long threads = (unsigned long long)t.x * t.y * t.z;
    if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu || g.y > 65535u || g.z > 65535u) return 9;
    if (threads == 0 || threads > 1024 || t.x > 1024 || t.y > 1024 || t.z > 64) return 9;
    std::lock_guard<std::mutex> guard(launch_mutex);
    std::vector<unsigned long long> order((unsigned long long)g.x * g.y * g.z);
    std::iota(order.begin(), order.end(), 0ull);
    if (block_order == 1) std::reverse(order.begin(), order.end());
    if (block_order == 2) std::shuffle(order.begin(), order.end(), std::mt19937(block_seed));
    Block state;
    state.threads = (unsigned int)threads;
    state.block.reset(state.threads, &state.blocked, state.threads);
    state.warps = std::vector<Barrier>((state.threads + 31) / 32);
    for (unsigned int w = 0; w < state.warps.size(); ++w)
        state.warps[w].reset(std::min(32u, state.threads - 32u * w), &state.blocked, state.threads);
    state.slots.assign(2 * state.threads, 0);
    state.parity.assign(state.threads, 0);
    std::vector<std::thread> workers;
    workers.reserve(state.threads);
    for (unsigned int tid = 0; tid < state.threads; ++tid) {
        workers.emplace_back([&, tid] {
            current = &state;
            blockDim = t;
            gridDim = g;
            threadIdx = dim3{tid % t.x, (tid / t.x) % t.y, tid / (t.x * t.y)};
            for (const unsigned long long k : order) {
                blockIdx = dim3{(unsigned int)(k % g.x), (unsigned int)((k / g.x) % g.y),
                                (unsigned int)(k / ((unsigned long long)g.x * g.y))};
                body();
                state.warps[tid >> 5].leave(false);
                state.block.leave(true);  // the next block starts when this one has finished
            }
        });
    }
    for (std::thread& w : workers) w.join();
    return 0;
}

}  // namespace cuda_emu

#define __syncthreads() ::cuda_emu::syncthreads(__FILE__, __LINE__)
// __shfl_sync takes its source lane modulo the warp; the others give the caller's own value out of range
#define __shfl_sync(mask, v, src, ...) \
    ::cuda_emu::shuffle((mask), (v), [&](int) { return (int)(src) & 31; }, __FILE__, __LINE__)
#define __shfl_down_sync(mask, v, delta, ...) \
    ::cuda_emu::shuffle((mask), (v), [&](int emu_lane_) { return emu_lane_ + (int)(delta); }, __FILE__, __LINE__)
#define __shfl_up_sync(mask, v, delta, ...) \
    ::cuda_emu::shuffle((mask), (v), [&](int emu_lane_) { return emu_lane_ - (int)(delta); }, __FILE__, __LINE__)
#define __shfl_xor_sync(mask, v, lane_mask, ...) \
    ::cuda_emu::shuffle((mask), (v), [&](int emu_lane_) { return emu_lane_ ^ (int)(lane_mask); }, __FILE__, __LINE__)

template <typename T>
inline T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T>
inline T atomicExch(T* address, T value) {
    return std::atomic_ref<T>(*address).exchange(value);
}
template <typename T>
inline T atomicCAS(T* address, T expected, T desired) {
    std::atomic_ref<T>(*address).compare_exchange_strong(expected, desired);
    return expected;  // the old value, whether or not it was swapped
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned int __float_as_uint(float x) { return std::bit_cast<unsigned int>(x); }
inline float __uint_as_float(unsigned int x) { return std::bit_cast<float>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }

// Planted bugs (tests/emulation/planted.py patch `cuda_emu::planted(k)` into a copy of the source): bug k is
// active while planted_bug == k, so one build holds all of them and the tests switch them on one at a time.
namespace cuda_emu {
inline int planted_bug = -1;
inline bool planted(int bug) { return planted_bug == bug; }
}  // namespace cuda_emu

extern "C" void emu_plant(int bug) { cuda_emu::planted_bug = bug; }

extern "C" void emu_set_block_order(int order, unsigned int seed) {
    cuda_emu::block_order = order;
    cuda_emu::block_seed = seed;
}
