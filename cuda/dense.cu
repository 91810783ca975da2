// Dense n x n work of the Nystrom preconditioner, hand-written (no cuBLAS/cuSOLVER).
// Column-major, leading dimension n; "upper": A = U^T U with U in the upper triangle, as
// LAPACK's uplo = 'U' (the strict lower triangle is never read or written).
//
// Cholesky: blocked right-looking with kDenseBlock columns per step: the diagonal block is
// factored by one block of threads (unblocked, a barrier between columns), the row panel to
// its right is solved with U11^T (one thread per column), and the trailing matrix gets the
// symmetric rank-kb update (one thread per upper entry). Triangular solves are column
// sweeps in one block with two barriers per column; products are out-of-place, one thread
// per output entry, each summed in the order of the CPU loops. The solver's small in-place
// steps (column scaling, divide-and-shift of the preconditioner) are one thread per entry.
#include "device.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

__device__ __forceinline__ long long at(int i, int j, int n) { return i + static_cast<long long>(j) * n; }

// Unblocked factorisation of the diagonal block [k0, k0 + kb); *info = 1-based failing column.
__global__ void __launch_bounds__(kThreads) potrf_diag_kernel(double* a, int n, int k0, int kb, int* info) {
    __shared__ int failed;
    const int end = k0 + kb;
    for (int col = k0; col < end; ++col) {
        if (threadIdx.x == 0) {
            const double piv = a[at(col, col, n)];
            failed = !(piv > 0.0);
            if (failed)
                *info = col + 1;
            else
                a[at(col, col, n)] = sqrt(piv);
        }
        __syncthreads();     // pivot (or failure) visible to all
        if (failed) return;  // uniform: every thread read the same flag
        const double inv = 1.0 / a[at(col, col, n)];
        for (int j = col + 1 + threadIdx.x; j < end; j += kThreads) a[at(col, j, n)] *= inv;
        __syncthreads();  // row col of U in this block is final
        const int rem = end - col - 1;
        for (int e = threadIdx.x; e < rem * rem; e += kThreads) {
            const int i = col + 1 + e % rem, j = col + 1 + e / rem;
            if (i <= j) a[at(i, j, n)] -= a[at(col, i, n)] * a[at(col, j, n)];
        }
        __syncthreads();  // trailing block updated before the next pivot is read
    }
}

// Row panel: columns j >= k0 + kb get U12(:, j) = U11^-T A12(:, j) (forward substitution).
__global__ void __launch_bounds__(kThreads) trsm_panel_kernel(double* a, int n, int k0, int kb) {
    const int j = k0 + kb + blockIdx.x * kThreads + threadIdx.x;
    if (j >= n) return;
    for (int p = 0; p < kb; ++p) {
        double s = a[at(k0 + p, j, n)];
        for (int q = 0; q < p; ++q) s -= a[at(k0 + q, k0 + p, n)] * a[at(k0 + q, j, n)];
        a[at(k0 + p, j, n)] = s / a[at(k0 + p, k0 + p, n)];
    }
}

// Trailing update: A22(i, j) -= U12(:, i) . U12(:, j) for k0 + kb <= i <= j < n.
__global__ void __launch_bounds__(kThreads) syrk_update_kernel(double* a, int n, int k0, int kb) {
    const int t0 = k0 + kb, t = n - t0;
    const long long total = static_cast<long long>(t) * t, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step) {
        const int i = t0 + static_cast<int>(e % t), j = t0 + static_cast<int>(e / t);
        if (i > j) continue;
        double s = 0.0;
        for (int p = 0; p < kb; ++p) s += a[at(k0 + p, i, n)] * a[at(k0 + p, j, n)];
        a[at(i, j, n)] -= s;
    }
}

// out(i, j) = sum_{p >= j} U(i, p) U(j, p) for i <= j (the upper triangle of U U^T).
__global__ void __launch_bounds__(kThreads) lauum_kernel(const double* u, int n, double* out) {
    const long long total = static_cast<long long>(n) * n, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step) {
        const int i = static_cast<int>(e % n), j = static_cast<int>(e / n);
        if (i > j) continue;
        double s = 0.0;
        for (int p = j; p < n; ++p) s += u[at(i, p, n)] * u[at(j, p, n)];
        out[at(i, j, n)] = s;
    }
}

// Copies the upper triangle of src into dst.
__global__ void __launch_bounds__(kThreads) copy_upper_kernel(const double* src, int n, double* dst) {
    const long long total = static_cast<long long>(n) * n, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step)
        if (e % n <= e / n) dst[e] = src[e];
}

// One block: b <- U^-T b (forward) or U^-1 b (backward), column sweeps.
__global__ void __launch_bounds__(kThreads) trsv_kernel(const double* u, int n, int trans, double* b) {
    for (int step = 0; step < n; ++step) {
        const int j = trans ? step : n - 1 - step;
        const double xj = b[j] / u[at(j, j, n)];
        __syncthreads();  // every thread has read b[j] before it is overwritten
        if (threadIdx.x == 0) b[j] = xj;
        if (trans)  // b_i -= U(j, i) x_j for i > j: row j of U
            for (int i = j + 1 + threadIdx.x; i < n; i += kThreads) b[i] -= u[at(j, i, n)] * xj;
        else  // b_i -= U(i, j) x_j for i < j: column j of U
            for (int i = threadIdx.x; i < j; i += kThreads) b[i] -= u[at(i, j, n)] * xj;
        __syncthreads();  // b[next j] final before it is read
    }
}

// y = U x (trans 0: y_i = U(i,i) x_i + sum_{p > i} U(i, p) x_p) or U^T x (y_j = sum_{p <= j} U(p, j) x_p).
__global__ void __launch_bounds__(kThreads) trmv_kernel(const double* u, int n, int trans, const double* x, double* y) {
    for (int i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) {
        double s;
        if (trans) {
            s = 0.0;
            for (int p = 0; p <= i; ++p) s += u[at(p, i, n)] * x[p];
        } else {
            s = u[at(i, i, n)] * x[i];
            for (int p = i + 1; p < n; ++p) s += u[at(i, p, n)] * x[p];
        }
        y[i] = s;
    }
}

// y_i = sum_j A(i, j) x_j in j order, reading A(i, j) = A(j, i) (A symmetric, both triangles
// stored) so that the threads of a warp read consecutive entries.
__global__ void __launch_bounds__(kThreads) symv_kernel(const double* a, int n, const double* x, double* y) {
    for (int i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) {
        double s = 0.0;
        for (int j = 0; j < n; ++j) s += a[at(i, j, n)] * x[j];
        y[i] = s;
    }
}

// U(i, j) *= s_j for i <= j.
__global__ void __launch_bounds__(kThreads) scale_columns_upper_kernel(double* u, int n, const double* s) {
    const long long total = static_cast<long long>(n) * n, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step)
        if (e % n <= e / n) u[e] *= s[e / n];
}

// A(i, j) = A(i, j) / div for i <= j, plus shift on the diagonal (the CPU's order: divide, then add).
__global__ void __launch_bounds__(kThreads) divide_shift_upper_kernel(double* a, int n, double div, double shift) {
    const long long total = static_cast<long long>(n) * n, step = static_cast<long long>(gridDim.x) * kThreads;
    for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step) {
        const long long i = e % n, j = e / n;
        if (i > j) continue;
        double v = a[e] / div;
        if (i == j) v += shift;
        a[e] = v;
    }
}

unsigned grid_for(long long work) {
    const long long b = (work + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > 4096 ? 4096 : b));
}

}  // namespace

int dense_cholesky_upper(double* a, int n, Workspace& ws) {
    ws.info.resize(1);
    ws.info.zero();
    for (int k0 = 0; k0 < n; k0 += kDenseBlock) {
        const int kb = n - k0 < kDenseBlock ? n - k0 : kDenseBlock;
        FASTNPLM_LAUNCH(potrf_diag_kernel, 1, kThreads, 0, nullptr)(a, n, k0, kb, ws.info.data());
        check_launch("potrf_diag_kernel");
        int info = 0;
        ws.info.download(&info, 1);
        if (info != 0) return info;
        const int t = n - k0 - kb;
        if (t == 0) break;
        FASTNPLM_LAUNCH(trsm_panel_kernel, grid_for(t), kThreads, 0, nullptr)(a, n, k0, kb);
        check_launch("trsm_panel_kernel");
        FASTNPLM_LAUNCH(syrk_update_kernel, grid_for(static_cast<long long>(t) * t), kThreads, 0, nullptr)(a, n, k0,
                                                                                                           kb);
        check_launch("syrk_update_kernel");
    }
    return 0;
}

void dense_lauum_upper(double* u, int n, Workspace& ws) {
    ws.vec_a.resize(static_cast<std::size_t>(n) * n);
    const long long nn = static_cast<long long>(n) * n;
    FASTNPLM_LAUNCH(lauum_kernel, grid_for(nn), kThreads, 0, nullptr)(u, n, ws.vec_a.data());
    check_launch("lauum_kernel");
    FASTNPLM_LAUNCH(copy_upper_kernel, grid_for(nn), kThreads, 0, nullptr)(ws.vec_a.data(), n, u);
    check_launch("copy_upper_kernel");
}

void dense_trsv_upper(const double* u, int n, bool trans, double* b) {
    if (n == 0) return;
    FASTNPLM_LAUNCH(trsv_kernel, 1, kThreads, 0, nullptr)(u, n, trans ? 1 : 0, b);
    check_launch("trsv_kernel");
}

void dense_trmv_upper(const double* u, int n, bool trans, double* x, Workspace& ws) {
    if (n == 0) return;
    ws.vec_b.resize(n);
    FASTNPLM_LAUNCH(trmv_kernel, grid_for(n), kThreads, 0, nullptr)(u, n, trans ? 1 : 0, x, ws.vec_b.data());
    check_launch("trmv_kernel");
    check(cudaMemcpy(x, ws.vec_b.data(), sizeof(double) * n, cudaMemcpyDeviceToDevice), "cudaMemcpy device to device");
}

void dense_symv(const double* a, int n, const double* x, double* y) {
    if (n == 0) return;
    FASTNPLM_LAUNCH(symv_kernel, grid_for(n), kThreads, 0, nullptr)(a, n, x, y);
    check_launch("symv_kernel");
}

void dense_scale_columns_upper(double* u, int n, const double* s) {
    if (n == 0) return;
    FASTNPLM_LAUNCH(scale_columns_upper_kernel, grid_for(static_cast<long long>(n) * n), kThreads, 0, nullptr)(u, n, s);
    check_launch("scale_columns_upper_kernel");
}

void dense_divide_shift_upper(double* a, int n, double div, double shift) {
    if (n == 0) return;
    FASTNPLM_LAUNCH(divide_shift_upper_kernel, grid_for(static_cast<long long>(n) * n), kThreads, 0, nullptr)(a, n, div,
                                                                                                              shift);
    check_launch("divide_shift_upper_kernel");
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS
