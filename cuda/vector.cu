// CG vector operations. The dot product is deterministic: a fixed grid (a function of n),
// each thread sums a fixed strided subset in index order, blocks reduce through a fixed
// pairwise tree in shared memory, and one block adds the block partials the same way.
#include "device.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

__global__ void __launch_bounds__(kThreads) axpy_kernel(long long n, double a, const double* x, double* y) {
    const long long step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) y[i] += a * x[i];
}

__global__ void __launch_bounds__(kThreads) xpby_kernel(long long n, const double* x, double b, double* y) {
    const long long step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step)
        y[i] = x[i] + b * y[i];
}

// red[t] summed over t by a fixed pairwise tree into red[0]; called by every thread.
__device__ void tree_sum_1(double* red) {
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
}

__global__ void __launch_bounds__(kThreads)
    dot_partial_kernel(long long n, const double* x, const double* y, double* partial) {
    __shared__ double red[kThreads];
    const long long step = static_cast<long long>(gridDim.x) * kThreads;
    double s = 0.0;
    for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) s += x[i] * y[i];
    red[threadIdx.x] = s;
    __syncthreads();  // all thread sums written
    tree_sum_1(red);
    if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

// One block: out = sum of the block partials (blocks <= kThreads) by the same tree.
__global__ void __launch_bounds__(kThreads) dot_final_kernel(int blocks, const double* partial, double* out) {
    __shared__ double red[kThreads];
    red[threadIdx.x] = static_cast<int>(threadIdx.x) < blocks ? partial[threadIdx.x] : 0.0;
    __syncthreads();  // all partials loaded
    tree_sum_1(red);
    if (threadIdx.x == 0) *out = red[0];
}

unsigned vector_blocks(long long n) {
    const long long b = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > kThreads ? kThreads : b));
}

}  // namespace

void vec_axpy(std::int64_t n, double a, const double* x, double* y) {
    if (n == 0) return;
    FASTNPLM_LAUNCH(axpy_kernel, vector_blocks(n), kThreads, 0, nullptr)(n, a, x, y);
    check_launch("axpy_kernel");
}

void vec_xpby(std::int64_t n, const double* x, double b, double* y) {
    if (n == 0) return;
    FASTNPLM_LAUNCH(xpby_kernel, vector_blocks(n), kThreads, 0, nullptr)(n, x, b, y);
    check_launch("xpby_kernel");
}

void vec_dot(std::int64_t n, const double* x, const double* y, double* out, Workspace& ws) {
    const unsigned blocks = vector_blocks(n);
    ws.vec_c.resize(blocks);
    FASTNPLM_LAUNCH(dot_partial_kernel, blocks, kThreads, 0, nullptr)(n, x, y, ws.vec_c.data());
    check_launch("dot_partial_kernel");
    FASTNPLM_LAUNCH(dot_final_kernel, 1, kThreads, 0, nullptr)(static_cast<int>(blocks), ws.vec_c.data(), out);
    check_launch("dot_final_kernel");
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS
