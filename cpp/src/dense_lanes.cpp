// Triangular solves with many right-hand sides ("lanes"): x is n x ld row-major, lane q of row
// i at x[i * ld + q]. Each lane is computed by the same sequence of operations whatever the other
// lanes are, so a lane's result depends neither on the batch it is solved in nor on the threads:
// the threads take fixed 8-lane chunks, and every chunk runs the same code.
//
// U is the n x n upper factor, column-major (column j contiguous, U(i, j) at u[j * n + i]).
// Both solves sweep the columns of U once per group of up to kChunks chunks, so U (the dominant
// memory traffic, n^2/2 doubles) is read once per 16 lanes.
#include <algorithm>
#include <cstdint>

#include "dense.hpp"
#include "hot.hpp"

namespace fastnplm::dense {
namespace {

constexpr std::int64_t kLanes = 8;   // one chunk: a 512-bit vector of doubles
constexpr std::int64_t kChunks = 2;  // chunks swept together (two groups of 16 lanes keep two threads busy on 32)

// U^T x = b, forward: x_j = (b_j - sum_{i<j} U(i, j) x_i) / U(j, j), the sum in index order.
// Four columns at a time share each load of x_i.
template <int C>
FASTNPLM_INLINE inline void forward(const double* __restrict u, std::int64_t n, double* __restrict x, std::int64_t ld) {
    constexpr int W = C * kLanes;
    std::int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const double* c0 = u + j * n;
        const double* c1 = c0 + n;
        const double* c2 = c1 + n;
        const double* c3 = c2 + n;
        double s0[W], s1[W], s2[W], s3[W];
        for (int q = 0; q < W; ++q) {
            s0[q] = x[j * ld + q];
            s1[q] = x[(j + 1) * ld + q];
            s2[q] = x[(j + 2) * ld + q];
            s3[q] = x[(j + 3) * ld + q];
        }
        for (std::int64_t i = 0; i < j; ++i) {
            const double* __restrict xi = x + i * ld;
            const double a0 = c0[i], a1 = c1[i], a2 = c2[i], a3 = c3[i];
#pragma omp simd
            for (int q = 0; q < W; ++q) {
                s0[q] -= a0 * xi[q];
                s1[q] -= a1 * xi[q];
                s2[q] -= a2 * xi[q];
                s3[q] -= a3 * xi[q];
            }
        }
        // the 4 x 4 triangle, in the same index order as the sum above
        for (int q = 0; q < W; ++q) {
            const double x0 = s0[q] / c0[j];
            const double x1 = (s1[q] - c1[j] * x0) / c1[j + 1];
            const double x2 = (s2[q] - c2[j] * x0 - c2[j + 1] * x1) / c2[j + 2];
            const double x3 = (s3[q] - c3[j] * x0 - c3[j + 1] * x1 - c3[j + 2] * x2) / c3[j + 3];
            x[j * ld + q] = x0;
            x[(j + 1) * ld + q] = x1;
            x[(j + 2) * ld + q] = x2;
            x[(j + 3) * ld + q] = x3;
        }
    }
    for (; j < n; ++j) {
        const double* c0 = u + j * n;
        double s0[W];
        for (int q = 0; q < W; ++q) s0[q] = x[j * ld + q];
        for (std::int64_t i = 0; i < j; ++i) {
            const double* __restrict xi = x + i * ld;
            const double a0 = c0[i];
#pragma omp simd
            for (int q = 0; q < W; ++q) s0[q] -= a0 * xi[q];
        }
        for (int q = 0; q < W; ++q) x[j * ld + q] = s0[q] / c0[j];
    }
}

// U x = b, backward column sweep: x_j = x_j / U(j, j), then x_i -= U(i, j) x_j for i < j.
// Four columns at a time: x_i -= U(i, j+3) x_{j+3}, then j+2, j+1, j (the order of the
// one-column sweep), with one load and store of x_i for the four.
template <int C>
FASTNPLM_INLINE inline void backward(const double* __restrict u, std::int64_t n, double* __restrict x,
                                     std::int64_t ld) {
    constexpr int W = C * kLanes;
    std::int64_t j = n - 1;
    for (; j >= 3; j -= 4) {  // columns j-3..j
        const double* c3 = u + j * n;
        const double* c2 = c3 - n;
        const double* c1 = c2 - n;
        const double* c0 = c1 - n;
        const std::int64_t b = j - 3;
        double y0[W], y1[W], y2[W], y3[W];
        for (int q = 0; q < W; ++q) {  // the 4 x 4 triangle first
            const double v3 = x[j * ld + q] / c3[j];
            const double v2 = (x[(j - 1) * ld + q] - c3[j - 1] * v3) / c2[j - 1];
            const double v1 = (x[(j - 2) * ld + q] - c3[j - 2] * v3 - c2[j - 2] * v2) / c1[j - 2];
            const double v0 = (x[b * ld + q] - c3[b] * v3 - c2[b] * v2 - c1[b] * v1) / c0[b];
            x[j * ld + q] = y3[q] = v3;
            x[(j - 1) * ld + q] = y2[q] = v2;
            x[(j - 2) * ld + q] = y1[q] = v1;
            x[b * ld + q] = y0[q] = v0;
        }
        for (std::int64_t i = 0; i < b; ++i) {
            double* __restrict xi = x + i * ld;
            const double a3 = c3[i], a2 = c2[i], a1 = c1[i], a0 = c0[i];
#pragma omp simd
            for (int q = 0; q < W; ++q) xi[q] = xi[q] - a3 * y3[q] - a2 * y2[q] - a1 * y1[q] - a0 * y0[q];
        }
    }
    for (; j >= 0; --j) {
        const double* c0 = u + j * n;
        double y0[W];
        for (int q = 0; q < W; ++q) y0[q] = x[j * ld + q] = x[j * ld + q] / c0[j];
        for (std::int64_t i = 0; i < j; ++i) {
            double* __restrict xi = x + i * ld;
            const double a0 = c0[i];
#pragma omp simd
            for (int q = 0; q < W; ++q) xi[q] -= a0 * y0[q];
        }
    }
}

template <int C>
FASTNPLM_HOT void solve_group(const double* u, std::int64_t n, bool trans, double* x, std::int64_t ld) {
    if (trans)
        forward<C>(u, n, x, ld);
    else
        backward<C>(u, n, x, ld);
}

}  // namespace

void trsm_upper_lanes(const double* u, int n, bool trans, double* x, std::int64_t ld, int threads) {
    const std::int64_t chunks = ld / kLanes;
    const std::int64_t groups = (chunks + kChunks - 1) / kChunks;
    // Groups of kChunks chunks from the left, the last one narrower: a lane's arithmetic is the
    // same in every group width (the lanes do not interact), so the split is free to vary.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (groups > 1)
    for (std::int64_t g = 0; g < groups; ++g) {
        const std::int64_t c0 = g * kChunks, c = std::min(kChunks, chunks - c0);
        double* xg = x + c0 * kLanes;
        switch (c) {
            case 1:
                solve_group<1>(u, n, trans, xg, ld);
                break;
            default:
                solve_group<2>(u, n, trans, xg, ld);
                break;
        }
    }
}

}  // namespace fastnplm::dense
