// Projected kernel features, the batched-toy path of the calibration (python/fastnplm/_spectral.py):
// F = K(x, c) G with its weighted Gram matrix F^T diag(w) F and F^T u in one pass over the
// events, the Gram matrix of stored feature rows, and the reference term sum_i w_i expm1(F V)_iq
// of a batch of fits.
//
// Same shape as the Gaussian-kernel row passes (gauss.cu): a block takes row tiles of kRows
// events (tile t goes to block t mod gridDim.x, gridDim.x = row_blocks(n)); each thread owns
// fixed output entries (feature columns q, Gram entries (a, b), fit columns q) and adds the
// tile's terms in event order to the block's partial, which sum_blocks (gauss.cu) then adds in
// block order. Every result is a function of the inputs and n only.
#include <stdexcept>
#include <string>

#include "device.cuh"
#include "features_cuda.hpp"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

// One tile: panel (kRows x m) = K(x_rows, c), then ft (kRows x r) = panel G. Rows past n are 0.
__device__ void project_tile(const double* x, long long n, int d, const double* ct, long long m, double gamma,
                             const double* g, long long r, long long row0, double* xs, double* panel, double* ft) {
    for (int idx = threadIdx.x; idx < kRows * d; idx += kThreads) {
        const int rr = idx / d;
        xs[idx] = row0 + rr < n ? x[(row0 + rr) * d + (idx - rr * d)] : 0.0;
    }
    __syncthreads();  // the rows are staged
    for (long long j = threadIdx.x; j < m; j += kThreads)
        for (int rr = 0; rr < kRows; ++rr) {
            double s = 0.0;
            for (int q = 0; q < d; ++q) {
                const double t = ct[q * m + j] - xs[rr * d + q];
                s += t * t;
            }
            panel[rr * m + j] = row0 + rr < n ? exp(-gamma * s) : 0.0;
        }
    __syncthreads();  // the kernel panel is complete
    for (long long q = threadIdx.x; q < r; q += kThreads) {
        double f[kRows] = {};
        for (long long j = 0; j < m; ++j) {
            const double gj = g[j * r + q];
            for (int rr = 0; rr < kRows; ++rr) f[rr] += panel[rr * m + j] * gj;
        }
        for (int rr = 0; rr < kRows; ++rr) ft[rr * r + q] = f[rr];
    }
    __syncthreads();  // the feature tile is complete
}

// pw (r x r) += sum over the tile's rows of w_i f_i f_i^T; pg (r) += sum of u_i f_i. ft is the
// (kRows x r) tile, rows >= rows have weight 0.
__device__ void gram_tile(const double* ft, long long r, int rows, const double* wr, const double* ur, double* pw,
                          double* pg) {
    // constant trip counts over the tile's rows (padding rows have weight 0 and are skipped)
    if (pw != nullptr)
        for (long long ab = threadIdx.x; ab < r * r; ab += kThreads) {
            const long long a = ab / r, b = ab - a * r;
            double s = 0.0;
            for (int rr = 0; rr < kRows; ++rr)
                if (rr < rows) s += wr[rr] * ft[rr * r + a] * ft[rr * r + b];
            pw[ab] += s;
        }
    if (pg != nullptr)
        for (long long q = threadIdx.x; q < r; q += kThreads) {
            double s = 0.0;
            for (int rr = 0; rr < kRows; ++rr)
                if (rr < rows) s += ur[rr] * ft[rr * r + q];
            pg[q] += s;
        }
}

__global__ void __launch_bounds__(kThreads)
    feature_project_kernel(const double* x, long long n, int d, const double* ct, long long m, double gamma,
                           const double* g, long long r, const double* w, const double* u, double* out_f,
                           double* partial_w, double* partial_g, double* scratch) {
    double* xs = dynamic_smem<double>();
    double* panel = scratch + blockIdx.x * kRows * (m + r);  // this block's kernel panel and feature tile
    double* ft = panel + kRows * m;
    double* pw = partial_w ? partial_w + blockIdx.x * r * r : nullptr;
    double* pg = partial_g ? partial_g + blockIdx.x * r : nullptr;
    __shared__ double wr[kRows], ur[kRows];
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile * kRows;
        const int rows = n - row0 < kRows ? static_cast<int>(n - row0) : kRows;
        if (threadIdx.x < kRows) {
            wr[threadIdx.x] = w != nullptr && static_cast<int>(threadIdx.x) < rows ? w[row0 + threadIdx.x] : 0.0;
            ur[threadIdx.x] = u != nullptr && static_cast<int>(threadIdx.x) < rows ? u[row0 + threadIdx.x] : 0.0;
        }
        project_tile(x, n, d, ct, m, gamma, g, r, row0, xs, panel, ft);
        if (out_f != nullptr)
            for (long long idx = threadIdx.x; idx < rows * r; idx += kThreads) out_f[row0 * r + idx] = ft[idx];
        gram_tile(ft, r, rows, wr, ur, pw, pg);
        __syncthreads();  // the tile is consumed before the next one overwrites it
    }
}

// partial (gridDim.x x r x r): this block's sum of w_i f_i f_i^T over stored rows f (n x r).
__global__ void __launch_bounds__(kThreads)
    features_gram_kernel(const double* f, long long n, long long r, const double* w, double* partial) {
    double* pw = partial + blockIdx.x * r * r;
    __shared__ double wr[kRows];
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile * kRows;
        const int rows = n - row0 < kRows ? static_cast<int>(n - row0) : kRows;
        if (static_cast<int>(threadIdx.x) < kRows)
            wr[threadIdx.x] = static_cast<int>(threadIdx.x) < rows ? w[row0 + threadIdx.x] : 0.0;
        __syncthreads();  // the weights are staged
        gram_tile(f + row0 * r, r, rows, wr, nullptr, pw, nullptr);
        __syncthreads();  // wr is read before the next tile overwrites it
    }
}

// partial (gridDim.x x b): this block's sum of w_i expm1((F V)_iq), f (n x r), V (r x b).
__global__ void __launch_bounds__(kThreads)
    features_expm1_kernel(const double* f, long long n, long long r, const double* v, long long b, const double* w,
                          double* partial) {
    double* acc = partial + blockIdx.x * b;
    const long long tiles = (n + kRows - 1) / kRows;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long row0 = tile * kRows;
        const int rows = n - row0 < kRows ? static_cast<int>(n - row0) : kRows;
        for (long long q = threadIdx.x; q < b; q += kThreads) {
            double s[kRows] = {};
            for (long long a = 0; a < r; ++a) {
                const double va = v[a * b + q];
                for (int rr = 0; rr < kRows; ++rr)  // constant trip count: s stays in registers
                    if (rr < rows) s[rr] += f[(row0 + rr) * r + a] * va;
            }
            double t = 0.0;
            for (int rr = 0; rr < kRows; ++rr)
                if (rr < rows) t += w[row0 + rr] * expm1(s[rr]);
            acc[q] += t;
        }
    }
}

}  // namespace

const std::vector<std::string>& feature_kernel_names() {
    static const std::vector<std::string> names = {"feature_project_kernel", "features_gram_kernel",
                                                   "features_expm1_kernel"};
    return names;
}

void feature_project(DevicePoints x, DeviceCenters c, double gamma, const double* g, std::int64_t r, const double* w,
                     const double* u, double* out_f, double* out_w, double* out_g, Workspace& ws) {
    if (r == 0) return;
    if (static_cast<std::size_t>(kRows) * x.d * sizeof(double) > kSmemBudget)
        throw std::invalid_argument("CUDA backend: " + std::to_string(x.d) + " features do not fit a row tile");
    const int blocks = row_blocks(x.n);
    double* pw = nullptr;
    double* pg = nullptr;
    if (out_w != nullptr) {
        ws.part_a.resize(static_cast<std::size_t>(blocks) * r * r);
        ws.part_a.zero();
        pw = ws.part_a.data();
    }
    if (out_g != nullptr) {
        ws.part_b.resize(static_cast<std::size_t>(blocks) * r);
        ws.part_b.zero();
        pg = ws.part_b.data();
    }
    ws.panel.resize(static_cast<std::size_t>(blocks) * kRows * (c.m + r));
    if (x.n > 0) {  // no events: the sums below are of zeroed partials
        FASTNPLM_LAUNCH(feature_project_kernel, blocks, kThreads, sizeof(double) * kRows * x.d, nullptr)(
            x.x, x.n, x.d, c.ct, c.m, gamma, g, r, w, u, out_f, pw, pg, ws.panel.data());
        check_launch("feature_project_kernel");
    }
    if (pw != nullptr) sum_blocks(pw, blocks, r * r, out_w);
    if (pg != nullptr) sum_blocks(pg, blocks, r, out_g);
}

void features_gram(const double* f, std::int64_t n, std::int64_t r, const double* w, double* out, Workspace& ws) {
    if (r == 0) return;
    const int blocks = row_blocks(n);
    ws.part_a.resize(static_cast<std::size_t>(blocks) * r * r);
    ws.part_a.zero();
    if (n > 0) {
        FASTNPLM_LAUNCH(features_gram_kernel, blocks, kThreads, 0, nullptr)(f, n, r, w, ws.part_a.data());
        check_launch("features_gram_kernel");
    }
    sum_blocks(ws.part_a.data(), blocks, r * r, out);
}

void features_expm1_sum(const double* f, std::int64_t n, std::int64_t r, const double* v, std::int64_t b,
                        const double* w, double* out, Workspace& ws) {
    if (b == 0) return;
    const int blocks = row_blocks(n);
    ws.part_a.resize(static_cast<std::size_t>(blocks) * b);
    ws.part_a.zero();
    if (n > 0) {
        FASTNPLM_LAUNCH(features_expm1_kernel, blocks, kThreads, 0, nullptr)(f, n, r, v, b, w, ws.part_a.data());
        check_launch("features_expm1_kernel");
    }
    sum_blocks(ws.part_a.data(), blocks, b, out);
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS
