#pragma once
// CUDA emulation for tests: lets the kernel sources in cuda/ compile as C++20 with g++ and
// run on CPU threads, so they can be checked against the CPU backend (and under
// ThreadSanitizer / AddressSanitizer) on machines without a GPU. See cuda/README.md for
// what this does and does not prove.
//
// Execution model of a launch kernel<<<grid, block, smem>>>(args...):
//   * one std::thread per CUDA thread of a block (blockDim.x * y * z of them, taken from a
//     pool that lives for the whole process, so launches do not create threads); together
//     they run the blocks one after another (block-sequential): every thread runs block b,
//     then all meet at a barrier before block b + 1 starts;
//   * __syncthreads() is std::barrier::arrive_and_wait over the threads of the block
//     (libstdc++'s barrier is built on atomics + futex waits, which ThreadSanitizer
//     models, so a missing __syncthreads shows up as a data race);
//   * __shared__ is `static`: with one block alive at a time, a function-local static is
//     exactly "one copy per block, shared by its threads". (It also means one launch at a
//     time per process: kernels must not be launched from several host threads at once.)
//   * dynamic shared memory (fastnplm_cuda::dynamic_smem<T>() in the sources) is one heap
//     buffer per launch, filled with 0xFF bytes (NaN as doubles) before every block, so a
//     read of shared memory that no thread of the block wrote shows up as NaN;
//   * device memory is host memory (malloc), so AddressSanitizer sees out-of-bounds
//     accesses of kernels; streams are no-ops and every call is synchronous;
//   * cudaMemcpy counts its calls and bytes by direction (emu::transfers()), so tests can
//     assert what crosses between host and device.
// Kernels must call __syncthreads() from every thread of the block (as CUDA requires);
// the emulation does not detect a __syncthreads in divergent code (it would deadlock or
// pair the wrong barriers). Warp-level primitives are not emulated: the kernels use none.
#include <atomic>
#include <barrier>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#if __cplusplus < 202002L
#error "cuda_emu.hpp needs C++20 (std::barrier, std::atomic_ref)"
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Per CUDA thread: each emulated thread sets its own copies before running a block.
inline thread_local dim3 threadIdx{0, 0, 0};
inline thread_local dim3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

// ---- runtime API subset (host memory, synchronous) ----
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
using cudaStream_t = struct emu_stream*;

inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess:
            return "no error (emulated)";
        case cudaErrorInvalidValue:
            return "invalid argument (emulated)";
        case cudaErrorMemoryAllocation:
            return "out of memory (emulated)";
    }
    return "unknown error (emulated)";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;  // the emulated device
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
    *p = std::malloc(bytes == 0 ? 1 : bytes);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) {
    std::free(p);
    return cudaSuccess;
}
namespace emu {
/// cudaMemcpy calls and bytes by cudaMemcpyKind since the start of the process (host thread only).
struct Transfers {
    unsigned long long calls[5] = {}, bytes[5] = {};
};
inline Transfers& transfers() {
    static Transfers t;
    return t;
}
}  // namespace emu

inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return cudaErrorInvalidValue;
    ++emu::transfers().calls[kind];
    emu::transfers().bytes[kind] += bytes;
    if (bytes) std::memcpy(dst, src, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind k,
                                   cudaStream_t = nullptr) {
    return cudaMemcpy(dst, src, bytes, k);
}
inline cudaError_t cudaMemset(void* p, int value, std::size_t bytes) {
    if (bytes) std::memset(p, value, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t = nullptr) {
    return cudaMemset(p, value, bytes);
}

// ---- device-side intrinsics ----
namespace emu {
namespace detail {
inline std::barrier<>* block_barrier = nullptr;  // the barrier of the running launch
inline std::vector<unsigned char> dynamic_smem;  // the dynamic shared memory of the running launch
}  // namespace detail

inline void* dynamic_smem_base() { return detail::dynamic_smem.data(); }

namespace detail {
// Worker threads kept across launches; run(n, job) calls job(i) on workers 0..n-1 and
// returns when all have finished.
class Pool {
public:
    ~Pool() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        start_.notify_all();
        for (auto& t : workers_) t.join();
    }
    void run(unsigned n, std::function<void(unsigned)> job) {
        std::unique_lock<std::mutex> lk(mu_);
        while (workers_.size() < n) {
            const unsigned i = static_cast<unsigned>(workers_.size());
            workers_.emplace_back([this, i] { work(i); });
        }
        job_ = std::move(job);
        active_ = remaining_ = n;
        ++generation_;
        start_.notify_all();
        done_.wait(lk, [this] { return remaining_ == 0; });
    }

private:
    void work(unsigned i) {
        unsigned long long seen = 0;
        std::unique_lock<std::mutex> lk(mu_);
        for (;;) {
            start_.wait(lk, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            if (i >= active_) continue;
            lk.unlock();
            job_(i);  // job_ is not reassigned before every active worker has finished
            lk.lock();
            if (--remaining_ == 0) done_.notify_one();
        }
    }
    std::mutex mu_;
    std::condition_variable start_, done_;
    std::vector<std::thread> workers_;
    std::function<void(unsigned)> job_;
    unsigned long long generation_ = 0;
    unsigned active_ = 0, remaining_ = 0;
    bool stop_ = false;
};

inline Pool& pool() {
    static Pool p;
    return p;
}
}  // namespace detail

// Runs kernel(args...) over grid x block, block-sequential, one pool thread per CUDA thread.
template <class... P>
void run(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem_bytes, std::tuple<P...> args) {
    const unsigned nthreads = block.x * block.y * block.z;
    const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
    if (nthreads == 0 || nthreads > 1024 || nblocks == 0) std::abort();  // CUDA's limits: invalid launch
    detail::dynamic_smem.assign(smem_bytes + 16, 0xFF);
    std::barrier<> bar(nthreads);
    detail::block_barrier = &bar;
    detail::pool().run(nthreads, [&](unsigned t) {
        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
        blockDim = block;
        gridDim = grid;
        for (unsigned long long b = 0; b < nblocks; ++b) {
            blockIdx = dim3(static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                            static_cast<unsigned>(b / (1ull * grid.x * grid.y)));
            std::apply(kernel, args);
            bar.arrive_and_wait();  // block b done everywhere
            if (t == 0) std::memset(detail::dynamic_smem.data(), 0xFF, detail::dynamic_smem.size());
            bar.arrive_and_wait();  // fresh shared memory before block b + 1
        }
    });
    detail::block_barrier = nullptr;
}

// FASTNPLM_LAUNCH(kernel, grid, block, smem, stream)(args...): arguments are converted to
// the kernel's parameter types and copied, as a real launch does.
template <class... P>
struct Launcher {
    void (*kernel)(P...);
    dim3 grid, block;
    std::size_t smem;
    template <class... A>
    void operator()(A&&... a) const {
        run(kernel, grid, block, smem, std::tuple<P...>(static_cast<P>(std::forward<A>(a))...));
    }
};

template <class... P>
Launcher<P...> launcher(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t) {
    return {kernel, grid, block, smem};
}
}  // namespace emu

inline void __syncthreads() { emu::detail::block_barrier->arrive_and_wait(); }

template <class T>
inline T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

#define FASTNPLM_LAUNCH(kernel, grid, block, smem, stream) ::emu::launcher(kernel, grid, block, smem, stream)
