// CPU backend of the Gaussian-kernel primitives.
//
// Layout: the centers are transposed once per call into a (d, m_pad) array so that the
// inner loops run over centers with unit stride and vectorise; a kernel row k(x_i, .) is
// built in a small per-thread buffer (m_pad doubles, in L1/L2) and used immediately for
// the dot product with v and, in the fused product, for the rank-1 update of the output.
// So each kernel value is evaluated exactly once per pass and the n x m matrix is never
// stored. Rows go two at a time (kernel_row2): each center coordinate is loaded once for
// both and the two exp chains overlap (measured 1.3-1.8x over one row at a time).
//
// Determinism: reductions over rows use a fixed partition of the rows into groups that
// depends on n only; each group accumulates into its own partial vector in row order
// and the partials are added in group order. Any thread count gives identical bits.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends.hpp"
#include "dense.hpp"
#include "fastnplm/kernel_ops.hpp"
#include "hot.hpp"
#include "vexp.hpp"

namespace fastnplm {
namespace {

constexpr std::int64_t kMaxGroups = 64;
constexpr std::int64_t kMinRowsPerGroup = 128;

struct Centers {
    std::vector<double> t;  // t[k * mp + j] = c_j[k]; padding columns are zero
    std::int64_t m = 0, mp = 0, d = 0;
};

Centers transpose_centers(MatrixView c) {
    Centers out;
    out.m = c.rows;
    out.d = c.cols;
    out.mp = (c.rows + 7) / 8 * 8;
    out.t.assign(static_cast<size_t>(out.mp * out.d), 0.0);
    for (std::int64_t j = 0; j < c.rows; ++j)
        for (std::int64_t k = 0; k < c.cols; ++k) out.t[k * out.mp + j] = c.row(j)[k];
    return out;
}

// row[j] = exp(-gamma * ||x - c_j||^2) for j < mp.
FASTNPLM_INLINE inline void kernel_row(const double* __restrict x, const Centers& c, double gamma,
                                       double* __restrict row) {
    const std::int64_t mp = c.mp;
    const double* __restrict ct = c.t.data();
    const double x0 = x[0];
#pragma omp simd
    for (std::int64_t j = 0; j < mp; ++j) {
        const double t = ct[j] - x0;
        row[j] = t * t;
    }
    for (std::int64_t k = 1; k < c.d; ++k) {
        const double xk = x[k];
        const double* __restrict ck = ct + k * mp;
#pragma omp simd
        for (std::int64_t j = 0; j < mp; ++j) {
            const double t = ck[j] - xk;
            row[j] += t * t;
        }
    }
#pragma omp simd
    for (std::int64_t j = 0; j < mp; ++j)
        row[j] = detail::vexp<detail::ExpClamp::low, detail::ExpPoly::horner>(-gamma * row[j]);
}

// Two rows at once: each center coordinate is loaded once for both, and the two
// independent exp evaluations interleave.
FASTNPLM_INLINE inline void kernel_row2(const double* __restrict x0, const double* __restrict x1, const Centers& c,
                                        double gamma, double* __restrict row0, double* __restrict row1) {
    const std::int64_t mp = c.mp;
    const double* __restrict ct = c.t.data();
    const double a0 = x0[0], b0 = x1[0];
#pragma omp simd
    for (std::int64_t j = 0; j < mp; ++j) {
        const double t0 = ct[j] - a0, t1 = ct[j] - b0;
        row0[j] = t0 * t0;
        row1[j] = t1 * t1;
    }
    for (std::int64_t k = 1; k < c.d; ++k) {
        const double ak = x0[k], bk = x1[k];
        const double* __restrict ck = ct + k * mp;
#pragma omp simd
        for (std::int64_t j = 0; j < mp; ++j) {
            const double t0 = ck[j] - ak, t1 = ck[j] - bk;
            row0[j] += t0 * t0;
            row1[j] += t1 * t1;
        }
    }
#pragma omp simd
    for (std::int64_t j = 0; j < mp; ++j) {
        row0[j] = detail::vexp<detail::ExpClamp::low, detail::ExpPoly::horner>(-gamma * row0[j]);
        row1[j] = detail::vexp<detail::ExpClamp::low, detail::ExpPoly::horner>(-gamma * row1[j]);
    }
}

FASTNPLM_INLINE inline double dot(const double* __restrict a, const double* __restrict b, std::int64_t n) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = 0; j < n; ++j) s += a[j] * b[j];
    return s;
}

FASTNPLM_INLINE inline void axpy(double* __restrict y, double a, const double* __restrict x, std::int64_t n) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

FASTNPLM_HOT void rows_block(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                             double* out, std::int64_t ld, double* row) {
    for (std::int64_t i = r0; i < r1; ++i) {
        kernel_row(x.row(i), c, gamma, row);
        std::copy(row, row + c.m, out + i * ld);
    }
}

// Rows [r0, r1) two at a time: pair(i, row_i, row_i+1) after kernel_row2, then single(i, row_i)
// for an odd last row. Callers pass FASTNPLM_INLINE lambdas, so the bodies are compiled into
// each target clone of the caller.
template <class Pair, class Single>
FASTNPLM_INLINE inline void for_row_pairs(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c,
                                          double gamma, double* row, Pair&& pair, Single&& single) {
    double* row0 = row;
    double* row1 = row + c.mp;
    std::int64_t i = r0;
    for (; i + 1 < r1; i += 2) {
        kernel_row2(x.row(i), x.row(i + 1), c, gamma, row0, row1);
        pair(i, row0, row1);
    }
    if (i < r1) {
        kernel_row(x.row(i), c, gamma, row0);
        single(i, row0);
    }
}

// (a0 . v, a1 . v) in one sweep.
FASTNPLM_INLINE inline void dot2(const double* __restrict a0, const double* __restrict a1, const double* __restrict v,
                                 std::int64_t n, double& s0, double& s1) {
    double t0 = 0.0, t1 = 0.0;
#pragma omp simd reduction(+ : t0, t1)
    for (std::int64_t j = 0; j < n; ++j) {
        t0 += a0[j] * v[j];
        t1 += a1[j] * v[j];
    }
    s0 = t0;
    s1 = t1;
}

// acc += u0 a0 + u1 a1.
FASTNPLM_INLINE inline void axpy2(double* __restrict acc, double u0, const double* __restrict a0, double u1,
                                  const double* __restrict a1, std::int64_t n) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) acc[j] += u0 * a0[j] + u1 * a1[j];
}

FASTNPLM_HOT void rows_mv(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                          const double* v, double* out, double* row) {
    const std::int64_t mp = c.mp;
    for_row_pairs(
        x, r0, r1, c, gamma, row,
        [&](std::int64_t i, const double* a0, const double* a1)
            FASTNPLM_INLINE { dot2(a0, a1, v, mp, out[i], out[i + 1]); },
        [&](std::int64_t i, const double* a0) FASTNPLM_INLINE { out[i] = dot(a0, v, mp); });
}

constexpr std::int64_t kPanel = 32;  // events per panel of the feature passes

// Column tiles of the reference-term passes: V is copied into (m, bp) with bp a multiple of
// kCols, zero-padded, so every column is summed by the same code whatever b is.
constexpr std::int64_t kCols = 8;

// o[q] = sum_k a[k] v[k * bp + q] for one row, all bp columns (same per-element order as tile4).
FASTNPLM_INLINE inline void dot_cols(const double* __restrict a, std::int64_t len, const double* v, std::int64_t bp,
                                     double* __restrict o) {
    std::fill(o, o + bp, 0.0);
    for (std::int64_t k = 0; k < len; ++k) {
        const double ak = a[k];
        const double* __restrict vk = v + k * bp;
#pragma omp simd
        for (std::int64_t q = 0; q < bp; ++q) o[q] += ak * vk[q];
    }
}

// acc (b) += w expm1(row V) for one row of m entries; o is a bp-long scratch row. Each
// column's sum over the row runs in index order, independent of the other columns.
FASTNPLM_INLINE inline void row_expm1(const double* row, std::int64_t m, const double* v, std::int64_t b,
                                      std::int64_t bp, double w, double* __restrict acc, double* __restrict o) {
    dot_cols(row, m, v, bp, o);
#pragma omp simd
    for (std::int64_t q = 0; q < b; ++q) acc[q] += w * detail::vexpm1(o[q]);
}

// s_rr[q] = sum_k a_rr[k] v[k * bp + q0 + q] for 4 rows a_0..a_3 of length len and kCols
// columns from q0, accumulated in registers over k in order: each (row, column) value is the
// one dot_cols computes for that row alone.
FASTNPLM_INLINE inline void tile4(const double* a0, const double* a1, const double* a2, const double* a3,
                                  std::int64_t len, const double* v, std::int64_t bp, std::int64_t q0, double* o0,
                                  double* o1, double* o2, double* o3) {
    double s0[kCols] = {}, s1[kCols] = {}, s2[kCols] = {}, s3[kCols] = {};
    for (std::int64_t k = 0; k < len; ++k) {
        const double* __restrict vk = v + k * bp + q0;
        const double b0 = a0[k], b1 = a1[k], b2 = a2[k], b3 = a3[k];
#pragma omp simd
        for (std::int64_t q = 0; q < kCols; ++q) {
            s0[q] += b0 * vk[q];
            s1[q] += b1 * vk[q];
            s2[q] += b2 * vk[q];
            s3[q] += b3 * vk[q];
        }
    }
    for (std::int64_t q = 0; q < kCols; ++q) {
        o0[q] = s0[q];
        o1[q] = s1[q];
        o2[q] = s2[q];
        o3[q] = s3[q];
    }
}

// o (4 x bp) = rows a_0..a_3 times v (len x bp), tile by tile.
FASTNPLM_INLINE inline void rows4_times(const double* a0, const double* a1, const double* a2, const double* a3,
                                        std::int64_t len, const double* v, std::int64_t bp, double* o) {
    for (std::int64_t q0 = 0; q0 < bp; q0 += kCols)
        tile4(a0, a1, a2, a3, len, v, bp, q0, o + q0, o + bp + q0, o + 2 * bp + q0, o + 3 * bp + q0);
}

// The same over stored feature rows f_i, register-tiled (4 rows at a time); the last rows of
// the range go one at a time.
FASTNPLM_HOT void rows_features_expm1(MatrixView f, std::int64_t r0, std::int64_t r1, const double* v, std::int64_t b,
                                      std::int64_t bp, const double* w, double* acc, double* o) {
    const std::int64_t r = f.cols;
    std::int64_t i = r0;
    for (; i + 4 <= r1; i += 4) {
        rows4_times(f.row(i), f.row(i + 1), f.row(i + 2), f.row(i + 3), r, v, bp, o);
        for (std::int64_t rr = 0; rr < 4; ++rr) {
            const double wi = w[i + rr];
            const double* __restrict orow = o + rr * bp;
#pragma omp simd
            for (std::int64_t q = 0; q < b; ++q) acc[q] += wi * detail::vexpm1(orow[q]);
        }
    }
    for (; i < r1; ++i) row_expm1(f.row(i), r, v, b, bp, w[i], acc, o);
}

// accw (lower triangle, r x r, or nullptr) += wi phi phi^T; accg (r, or nullptr) += ui phi.
FASTNPLM_INLINE inline void accumulate_gram(const double* __restrict phi, std::int64_t r, double wi, double ui,
                                            double* accw, double* accg) {
    if (accw)
        for (std::int64_t a = 0; a < r; ++a) {
            const double wa = wi * phi[a];
            double* __restrict row_a = accw + a * r;
#pragma omp simd
            for (std::int64_t b = 0; b <= a; ++b) row_a[b] += wa * phi[b];
        }
    if (accg) {
        double* __restrict g = accg;
#pragma omp simd
        for (std::int64_t a = 0; a < r; ++a) g[a] += ui * phi[a];
    }
}

// Projected features of rows [r0, r1): kernel rows four at a time, times g (m x rp), into
// out_f and the Gram/gradient partials (lower triangle of accw, r x r; accg, r).
FASTNPLM_HOT void rows_feature_project(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                                       const double* g, std::int64_t r, std::int64_t rp, const double* w,
                                       const double* u, double* out_f, double* accw, double* accg, double* rows,
                                       double* o) {
    const std::int64_t mp = c.mp;
    for (std::int64_t i = r0; i < r1; i += 4) {
        const std::int64_t len = std::min<std::int64_t>(4, r1 - i);
        if (len == 4) {
            kernel_row2(x.row(i), x.row(i + 1), c, gamma, rows, rows + mp);
            kernel_row2(x.row(i + 2), x.row(i + 3), c, gamma, rows + 2 * mp, rows + 3 * mp);
            rows4_times(rows, rows + mp, rows + 2 * mp, rows + 3 * mp, c.m, g, rp, o);
        } else {
            for (std::int64_t rr = 0; rr < len; ++rr) {
                kernel_row(x.row(i + rr), c, gamma, rows);
                dot_cols(rows, c.m, g, rp, o + rr * rp);
            }
        }
        for (std::int64_t rr = 0; rr < len; ++rr) {
            const double* phi = o + rr * rp;
            if (out_f) std::copy(phi, phi + r, out_f + (i + rr) * r);
            accumulate_gram(phi, r, accw ? w[i + rr] : 0.0, accg ? u[i + rr] : 0.0, accw, accg);
        }
    }
}

// Weighted Gram of stored feature rows [r0, r1): lower triangle of accw (r x r) += w_i f_i f_i^T,
// in panels of kPanel rows stored transposed (p, q: r x kPanel scratch) so the dot products run
// over events with unit stride.
FASTNPLM_HOT void rows_features_gram(MatrixView f, std::int64_t r0, std::int64_t r1, const double* w, double* accw,
                                     double* p, double* q) {
    const std::int64_t r = f.cols;
    for (std::int64_t base = r0; base < r1; base += kPanel) {
        const std::int64_t len = std::min(kPanel, r1 - base);
        for (std::int64_t e = 0; e < kPanel; ++e) {
            const double* fe = e < len ? f.row(base + e) : nullptr;
            const double we = e < len ? w[base + e] : 0.0;
            for (std::int64_t a = 0; a < r; ++a) {
                p[a * kPanel + e] = fe ? fe[a] : 0.0;
                q[a * kPanel + e] = fe ? we * fe[a] : 0.0;
            }
        }
        for (std::int64_t a = 0; a < r; ++a)
            for (std::int64_t b = 0; b <= a; ++b) accw[a * r + b] += dot(q + a * kPanel, p + b * kPanel, kPanel);
    }
}

FASTNPLM_HOT void rows_tmv(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                           const double* u, double* acc, double* row) {
    const std::int64_t mp = c.mp;
    for_row_pairs(
        x, r0, r1, c, gamma, row,
        [&](std::int64_t i, const double* a0, const double* a1)
            FASTNPLM_INLINE { axpy2(acc, u[i], a0, u[i + 1], a1, mp); },
        [&](std::int64_t i, const double* a0) FASTNPLM_INLINE { axpy(acc, u[i], a0, mp); });
}

FASTNPLM_HOT void rows_fused(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                             const double* v, const double* w, double* acc, double* row) {
    const std::int64_t mp = c.mp;
    for_row_pairs(
        x, r0, r1, c, gamma, row,
        [&](std::int64_t i, const double* a0, const double* a1) FASTNPLM_INLINE {
            double s0, s1;
            dot2(a0, a1, v, mp, s0, s1);
            axpy2(acc, w[i] * s0, a0, w[i + 1] * s1, a1, mp);
        },
        [&](std::int64_t i, const double* a0) FASTNPLM_INLINE { axpy(acc, w[i] * dot(a0, v, mp), a0, mp); });
}

// Feature pass over rows [r0, r1): panels of kPanel events, stored transposed (p[j * kPanel + r]
// = feature j of event r) so every sweep below runs over events with unit stride:
//   p = K T^{-1}   (forward substitution, column j of T at t + j * m)
//   accw(a, b) += sum_r w_r p_a[r] p_b[r] (b <= a),  accg(a) += sum_r u_r p_a[r]
// Rows past r1 in the last panel are zero and carry w = u = 0.
FASTNPLM_HOT void rows_feature_gram(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                                    const double* t, const double* w, const double* u, double* accw, double* accg,
                                    double* row, double* p, double* q) {
    const std::int64_t m = c.m;
    for (std::int64_t base = r0; base < r1; base += kPanel) {
        const std::int64_t len = std::min(kPanel, r1 - base);
        std::int64_t r = 0;
        for (; r + 1 < len; r += 2) {
            kernel_row2(x.row(base + r), x.row(base + r + 1), c, gamma, row, row + c.mp);
            for (std::int64_t j = 0; j < m; ++j) {
                p[j * kPanel + r] = row[j];
                p[j * kPanel + r + 1] = row[c.mp + j];
            }
        }
        for (; r < kPanel; ++r) {
            if (r < len) kernel_row(x.row(base + r), c, gamma, row);
            for (std::int64_t j = 0; j < m; ++j) p[j * kPanel + r] = r < len ? row[j] : 0.0;
        }
        for (std::int64_t j = 0; j < m; ++j) {
            double* __restrict pj = p + j * kPanel;
            const double* tj = t + j * m;
            for (std::int64_t i = 0; i < j; ++i) {
                const double* __restrict pi = p + i * kPanel;
                const double tij = tj[i];
#pragma omp simd
                for (std::int64_t r = 0; r < kPanel; ++r) pj[r] -= tij * pi[r];
            }
            const double inv = 1.0 / tj[j];
#pragma omp simd
            for (std::int64_t r = 0; r < kPanel; ++r) pj[r] *= inv;
        }
        double wr[kPanel], ur[kPanel];
        for (std::int64_t r = 0; r < kPanel; ++r) {
            wr[r] = r < len ? w[base + r] : 0.0;
            ur[r] = r < len ? u[base + r] : 0.0;
        }
        for (std::int64_t a = 0; a < m; ++a) {
            const double* __restrict pa = p + a * kPanel;
            double* __restrict qa = q + a * kPanel;
            double g = 0.0;
#pragma omp simd reduction(+ : g)
            for (std::int64_t r = 0; r < kPanel; ++r) {
                qa[r] = wr[r] * pa[r];
                g += ur[r] * pa[r];
            }
            accg[a] += g;
            for (std::int64_t b = 0; b <= a; ++b) accw[a * m + b] += dot(qa, p + b * kPanel, kPanel);
        }
    }
}

// ---- K^T diag(w) K V for many columns V (the reference's Hessian products of a block of toys) ----
// Rows go in chunks of kGramRows: their kernel rows kr (kGramRows x mp) are built once, then
//   y = kr V            (kGramRows x bp), each entry summed over the centers in index order,
//   acc += kr^T (w y)   (mp x bp), each entry summed over the rows in order,
// both register-tiled 4 x (8 C) with 8 C of the bp columns; every column's arithmetic is the same
// whatever the other columns are, so a toy's product does not depend on its batch.
constexpr std::int64_t kGramRows = 32;
constexpr std::int64_t kGramBlock = 256;  // centers per block of phase 1 (V's block stays in L2)

// y[r, q0 + q] += sum_{k in [k0, k1)} kr[r, k] v[k, q0 + q] for rows r0..r0+3, 8 C columns.
template <int C>
FASTNPLM_INLINE inline void gram_rows_times(const double* kr, std::int64_t mp, std::int64_t r0, std::int64_t k0,
                                            std::int64_t k1, const double* v, std::int64_t bp, std::int64_t q0,
                                            double* y) {
    constexpr int W = 8 * C;
    double s0[W], s1[W], s2[W], s3[W];
    double* y0 = y + r0 * bp + q0;
    for (int q = 0; q < W; ++q) {
        s0[q] = y0[q];
        s1[q] = y0[bp + q];
        s2[q] = y0[2 * bp + q];
        s3[q] = y0[3 * bp + q];
    }
    const double* a0 = kr + r0 * mp;
    const double* a1 = a0 + mp;
    const double* a2 = a1 + mp;
    const double* a3 = a2 + mp;
    for (std::int64_t k = k0; k < k1; ++k) {
        const double* __restrict vk = v + k * bp + q0;
        const double b0 = a0[k], b1 = a1[k], b2 = a2[k], b3 = a3[k];
#pragma omp simd
        for (int q = 0; q < W; ++q) {
            s0[q] += b0 * vk[q];
            s1[q] += b1 * vk[q];
            s2[q] += b2 * vk[q];
            s3[q] += b3 * vk[q];
        }
    }
    for (int q = 0; q < W; ++q) {
        y0[q] = s0[q];
        y0[bp + q] = s1[q];
        y0[2 * bp + q] = s2[q];
        y0[3 * bp + q] = s3[q];
    }
}

// acc[j, q0 + q] += sum_{r < rows} kr[r, j] y[r, q0 + q] for centers j..j+3, 8 C columns.
template <int C>
FASTNPLM_INLINE inline void gram_cols_update(const double* kr, std::int64_t mp, std::int64_t rows, std::int64_t j,
                                             const double* y, std::int64_t bp, std::int64_t q0, double* acc) {
    constexpr int W = 8 * C;
    double s0[W], s1[W], s2[W], s3[W];
    double* a = acc + j * bp + q0;
    for (int q = 0; q < W; ++q) {
        s0[q] = a[q];
        s1[q] = a[bp + q];
        s2[q] = a[2 * bp + q];
        s3[q] = a[3 * bp + q];
    }
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* __restrict yr = y + r * bp + q0;
        const double* kj = kr + r * mp + j;
        const double b0 = kj[0], b1 = kj[1], b2 = kj[2], b3 = kj[3];
#pragma omp simd
        for (int q = 0; q < W; ++q) {
            s0[q] += b0 * yr[q];
            s1[q] += b1 * yr[q];
            s2[q] += b2 * yr[q];
            s3[q] += b3 * yr[q];
        }
    }
    for (int q = 0; q < W; ++q) {
        a[q] = s0[q];
        a[bp + q] = s1[q];
        a[2 * bp + q] = s2[q];
        a[3 * bp + q] = s3[q];
    }
}

// Calls f.template operator()<C>(q0) over the column tiles of bp (a multiple of 8): 32 wide, then the rest.
template <class F>
FASTNPLM_INLINE inline void for_column_tiles(std::int64_t bp, F&& f) {
    std::int64_t q0 = 0;
    for (; q0 + 32 <= bp; q0 += 32) f(std::integral_constant<int, 4>{}, q0);
    switch ((bp - q0) / 8) {
        case 3:
            f(std::integral_constant<int, 3>{}, q0);
            break;
        case 2:
            f(std::integral_constant<int, 2>{}, q0);
            break;
        case 1:
            f(std::integral_constant<int, 1>{}, q0);
            break;
        default:
            break;
    }
}

// The kernel rows of events [i0, i0 + rows) into kr (kGramRows x mp; rows past the chunk up to a
// multiple of 4 zeroed), and y (same rows x bp) = kr V over the centers [0, k_end), blocked by
// kGramBlock centers: each entry summed over the centers in index order.
FASTNPLM_INLINE inline void chunk_times(MatrixView x, std::int64_t i0, std::int64_t rows, const Centers& c,
                                        double gamma, const double* v, std::int64_t bp, std::int64_t k_end, double* kr,
                                        double* y) {
    const std::int64_t mp = c.mp, rows4 = (rows + 3) / 4 * 4;
    std::int64_t r = 0;
    for (; r + 1 < rows; r += 2)
        kernel_row2(x.row(i0 + r), x.row(i0 + r + 1), c, gamma, kr + r * mp, kr + (r + 1) * mp);
    if (r < rows) kernel_row(x.row(i0 + r), c, gamma, kr + r * mp);
    std::fill(kr + rows * mp, kr + rows4 * mp, 0.0);
    std::fill(y, y + rows4 * bp, 0.0);
    for (std::int64_t k0 = 0; k0 < k_end; k0 += kGramBlock) {
        const std::int64_t k1 = std::min(k_end, k0 + kGramBlock);
        for (std::int64_t q = 0; q < rows4; q += 4)
            for_column_tiles(bp, [&](auto cc, std::int64_t q0) FASTNPLM_INLINE {
                gram_rows_times<decltype(cc)::value>(kr, mp, q, k0, k1, v, bp, q0, y);
            });
    }
}

// Rows [r0, r1) of K^T diag(w) K V into acc (mp x bp). kr: kGramRows x mp scratch, y: kGramRows x bp.
// mp is a multiple of 8 (so of 4); rows past r1 in the last chunk are zero with weight 0.
FASTNPLM_HOT void rows_gram_mm(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                               const double* v, std::int64_t bp, const double* w, double* acc, double* kr, double* y) {
    const std::int64_t mp = c.mp;
    for (std::int64_t i0 = r0; i0 < r1; i0 += kGramRows) {
        const std::int64_t rows = std::min(kGramRows, r1 - i0);
        chunk_times(x, i0, rows, c, gamma, v, bp, mp, kr, y);
        for (std::int64_t q = 0; q < rows; ++q) {
            const double wi = w[i0 + q];
            double* __restrict yq = y + q * bp;
#pragma omp simd
            for (std::int64_t l = 0; l < bp; ++l) yq[l] *= wi;
        }
        for (std::int64_t j = 0; j < mp; j += 4)
            for_column_tiles(bp, [&](auto cc, std::int64_t q0) FASTNPLM_INLINE {
                gram_cols_update<decltype(cc)::value>(kr, mp, rows, j, y, bp, q0, acc);
            });
    }
}

// acc (b) += w_i expm1((K V)_i) over the rows [r0, r1), in row order: kernel rows in chunks, their
// products with V blocked as in rows_gram_mm (each entry summed over the centers in index order,
// as dot_cols does). kr: kGramRows x mp scratch, y: kGramRows x bp.
FASTNPLM_HOT void rows_mm_expm1(MatrixView x, std::int64_t r0, std::int64_t r1, const Centers& c, double gamma,
                                const double* v, std::int64_t b, std::int64_t bp, const double* w, double* acc,
                                double* kr, double* y) {
    for (std::int64_t i0 = r0; i0 < r1; i0 += kGramRows) {
        const std::int64_t rows = std::min(kGramRows, r1 - i0);
        chunk_times(x, i0, rows, c, gamma, v, bp, c.m, kr, y);
        for (std::int64_t q = 0; q < rows; ++q) {
            const double wi = w[i0 + q];
            const double* __restrict yq = y + q * bp;
#pragma omp simd
            for (std::int64_t l = 0; l < b; ++l) acc[l] += wi * detail::vexpm1(yq[l]);
        }
    }
}

void check_shapes(MatrixView x, MatrixView c) {
    if (x.cols != c.cols)
        throw std::invalid_argument("kernel: points have " + std::to_string(x.cols) + " features but centers have " +
                                    std::to_string(c.cols));
    if (c.rows < 1 || c.cols < 1) throw std::invalid_argument("kernel: need at least one center and one feature");
}

class CpuKernelOps final : public KernelOps {
public:
    explicit CpuKernelOps(int threads) : threads_(resolve_threads(threads)) {}

    void kernel_block(MatrixView x, MatrixView c, double gamma, double* out, std::int64_t ld) const override {
        check_shapes(x, c);
        const Centers ct = transpose_centers(c);
        for_row_chunks(
            x.rows,
            [&](std::int64_t r0, std::int64_t r1, double* row) { rows_block(x, r0, r1, ct, gamma, out, ld, row); },
            ct.mp);
    }

    void kernel_mv(MatrixView x, MatrixView c, double gamma, const double* v, double* out) const override {
        check_shapes(x, c);
        const Centers ct = transpose_centers(c);
        std::vector<double> vp(ct.mp, 0.0);
        std::copy(v, v + c.rows, vp.begin());
        for_row_chunks(
            x.rows,
            [&](std::int64_t r0, std::int64_t r1, double* row) { rows_mv(x, r0, r1, ct, gamma, vp.data(), out, row); },
            ct.mp);
    }

    void kernel_mm_expm1_sum(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b, const double* w,
                             double* out) const override {
        check_shapes(x, c);
        if (b < 1) throw std::invalid_argument("kernel_mm_expm1_sum: need at least one right-hand side");
        const Centers ct = transpose_centers(c);
        const std::int64_t bp = (b + kCols - 1) / kCols * kCols;
        const std::vector<double> vp = pad_columns(v, c.rows, b, bp);
        reduce_groups(x.rows, b, b, kGramRows * (ct.mp + bp), out,
                      [&](std::int64_t r0, std::int64_t r1, double* acc, double* scratch) {
                          rows_mm_expm1(x, r0, r1, ct, gamma, vp.data(), b, bp, w, acc, scratch,
                                        scratch + kGramRows * ct.mp);
                      });
    }

    void feature_project(MatrixView x, MatrixView c, double gamma, const double* g, std::int64_t r, const double* w,
                         const double* u, double* out_f, double* out_w, double* out_g) const override {
        check_shapes(x, c);
        if (r < 1) throw std::invalid_argument("feature_project: need at least one feature column");
        const Centers ct = transpose_centers(c);
        const std::int64_t rp = (r + kCols - 1) / kCols * kCols, rr = r * r;
        const std::vector<double> gp = pad_columns(g, c.rows, r, rp);
        // Gram partials (r*r + r) per group, a fixed partition of the rows (a function of n only)
        const std::int64_t groups = std::max<std::int64_t>(1, std::min<std::int64_t>(16, (x.rows + 1023) / 1024));
        const bool reduce = out_w || out_g;
        std::vector<double> partial(reduce ? static_cast<size_t>(groups * (rr + r)) : 0, 0.0);
#pragma omp parallel num_threads(threads_) if (groups > 1)
        {
            std::vector<double> rows(4 * ct.mp), o(4 * rp);
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t gi = 0; gi < groups; ++gi) {
                double* acc = reduce ? partial.data() + gi * (rr + r) : nullptr;
                rows_feature_project(x, x.rows * gi / groups, x.rows * (gi + 1) / groups, ct, gamma, gp.data(), r, rp,
                                     w, u, out_f, out_w ? acc : nullptr, out_g ? acc + rr : nullptr, rows.data(),
                                     o.data());
            }
        }
        if (out_w) sum_lower(partial.data(), groups, rr + r, r, out_w);
        if (out_g) {
            std::fill(out_g, out_g + r, 0.0);
            for (std::int64_t gi = 0; gi < groups; ++gi)
                for (std::int64_t a = 0; a < r; ++a) out_g[a] += partial[gi * (rr + r) + rr + a];
        }
    }

    void features_gram(MatrixView f, const double* w, double* out) const override {
        const std::int64_t r = f.cols, rr = r * r;
        const std::int64_t groups = std::max<std::int64_t>(1, std::min<std::int64_t>(16, (f.rows + 1023) / 1024));
        std::vector<double> partial(static_cast<size_t>(groups * rr), 0.0);
#pragma omp parallel num_threads(threads_) if (groups > 1)
        {
            std::vector<double> p(r * kPanel), q(r * kPanel);
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t gi = 0; gi < groups; ++gi)
                rows_features_gram(f, f.rows * gi / groups, f.rows * (gi + 1) / groups, w, partial.data() + gi * rr,
                                   p.data(), q.data());
        }
        sum_lower(partial.data(), groups, rr, r, out);
    }

    void features_expm1_sum(MatrixView f, const double* v, std::int64_t b, const double* w,
                            double* out) const override {
        if (b < 1) throw std::invalid_argument("features_expm1_sum: need at least one right-hand side");
        const std::int64_t bp = (b + kCols - 1) / kCols * kCols;
        const std::vector<double> vp = pad_columns(v, f.cols, b, bp);
        reduce_groups(f.rows, b, b, 4 * bp, out, [&](std::int64_t r0, std::int64_t r1, double* acc, double* o) {
            rows_features_expm1(f, r0, r1, vp.data(), b, bp, w, acc, o);
        });
    }

    void kernel_tmv(MatrixView x, MatrixView c, double gamma, const double* u, double* out) const override {
        check_shapes(x, c);
        const Centers ct = transpose_centers(c);
        reduce_groups(x.rows, ct.mp, ct.m, 2 * ct.mp, out,
                      [&](std::int64_t r0, std::int64_t r1, double* acc, double* row) {
                          rows_tmv(x, r0, r1, ct, gamma, u, acc, row);
                      });
    }

    void kernel_fused(MatrixView x, MatrixView c, double gamma, const double* v, const double* w,
                      double* out) const override {
        check_shapes(x, c);
        const Centers ct = transpose_centers(c);
        std::vector<double> vp(ct.mp, 0.0);
        std::copy(v, v + c.rows, vp.begin());
        reduce_groups(x.rows, ct.mp, ct.m, 2 * ct.mp, out,
                      [&](std::int64_t r0, std::int64_t r1, double* acc, double* row) {
                          rows_fused(x, r0, r1, ct, gamma, vp.data(), w, acc, row);
                      });
    }

    void kernel_gram_mm(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b, const double* w,
                        double* out) const override {
        check_shapes(x, c);
        if (b < 1) throw std::invalid_argument("kernel_gram_mm: need at least one column");
        const Centers ct = transpose_centers(c);
        const std::int64_t bp = (b + 7) / 8 * 8, width = ct.mp * bp;
        std::vector<double> vp(static_cast<size_t>(width), 0.0);  // padding centers and columns: zero
        for (std::int64_t j = 0; j < c.rows; ++j) std::copy(v + j * b, v + (j + 1) * b, vp.begin() + j * bp);
        // fewer, larger groups than the vector reductions: each partial is mp x bp
        const std::int64_t groups = std::max<std::int64_t>(1, std::min<std::int64_t>(16, (x.rows + 4095) / 4096));
        std::vector<double> partial(static_cast<size_t>(groups * width), 0.0);
#pragma omp parallel num_threads(threads_) if (groups > 1)
        {
            std::vector<double> kr(static_cast<size_t>(kGramRows * ct.mp)), y(static_cast<size_t>(kGramRows * bp));
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t g = 0; g < groups; ++g)
                rows_gram_mm(x, x.rows * g / groups, x.rows * (g + 1) / groups, ct, gamma, vp.data(), bp, w,
                             partial.data() + g * width, kr.data(), y.data());
        }
        for (std::int64_t j = 0; j < c.rows; ++j)
            for (std::int64_t q = 0; q < b; ++q) {
                double s = 0.0;
                for (std::int64_t g = 0; g < groups; ++g) s += partial[g * width + j * bp + q];
                out[j * b + q] = s;
            }
    }

    void feature_gram(MatrixView x, MatrixView c, double gamma, const double* t, const double* w, const double* u,
                      double* out_w, double* out_g) const override {
        check_shapes(x, c);
        const Centers ct = transpose_centers(c);
        const std::int64_t m = ct.m, mm = m * m;
        // (m*m + m)-sized partials per group: fewer groups than the vector reductions to bound memory.
        const std::int64_t groups = std::max<std::int64_t>(1, std::min<std::int64_t>(16, (x.rows + 1023) / 1024));
        std::vector<double> partial(static_cast<size_t>(groups * (mm + m)), 0.0);
#pragma omp parallel num_threads(threads_) if (groups > 1)
        {
            std::vector<double> row(2 * ct.mp), p(m * kPanel), q(m * kPanel);
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t g = 0; g < groups; ++g) {
                double* acc = partial.data() + g * (mm + m);
                rows_feature_gram(x, x.rows * g / groups, x.rows * (g + 1) / groups, ct, gamma, t, w, u, acc, acc + mm,
                                  row.data(), p.data(), q.data());
            }
        }
        std::fill(out_g, out_g + m, 0.0);
        for (std::int64_t a = 0; a < m; ++a)  // lower triangle accumulated, mirrored: exactly symmetric
            for (std::int64_t b = 0; b <= a; ++b) {
                double s = 0.0;
                for (std::int64_t g = 0; g < groups; ++g) s += partial[g * (mm + m) + a * m + b];
                out_w[a * m + b] = s;
                out_w[b * m + a] = s;
            }
        for (std::int64_t g = 0; g < groups; ++g)
            for (std::int64_t a = 0; a < m; ++a) out_g[a] += partial[g * (mm + m) + mm + a];
    }

    // Buffers are host arrays here: the solver's loops as they were, summed in the same order
    // (dot in index order, no SIMD reassociation), so the CPU results do not change.
    Buffer alloc(std::int64_t n) const override {
        require_sizes(n >= 0, "alloc");
        return Buffer(new double[static_cast<size_t>(n)](), n, [](double* p) { delete[] p; });
    }
    void upload(const double* host, Buffer& dst) const override { std::copy_n(host, dst.size(), dst.data()); }
    void download(const Buffer& src, double* host) const override { std::copy_n(src.data(), src.size(), host); }
    void copy(const Buffer& src, Buffer& dst) const override {
        require_sizes(src.size() == dst.size(), "copy");
        std::copy_n(src.data(), src.size(), dst.data());
    }
    void axpy(double a, const Buffer& x, Buffer& y) const override {
        require_sizes(x.size() == y.size(), "axpy");
        const double* xp = x.data();
        double* yp = y.data();
        for (std::int64_t j = 0; j < y.size(); ++j) yp[j] += a * xp[j];
    }
    void xpby(const Buffer& x, double b, Buffer& y) const override {
        require_sizes(x.size() == y.size(), "xpby");
        const double* xp = x.data();
        double* yp = y.data();
        for (std::int64_t j = 0; j < y.size(); ++j) yp[j] = xp[j] + b * yp[j];
    }
    double dot(const Buffer& x, const Buffer& y) const override {
        require_sizes(x.size() == y.size(), "dot");
        double s = 0.0;
        for (std::int64_t j = 0; j < x.size(); ++j) s += x.data()[j] * y.data()[j];
        return s;
    }
    void kernel_fused(MatrixView x, MatrixView c, double gamma, const Buffer& v, const Buffer& w,
                      Buffer& out) const override {
        require_sizes(v.size() == c.rows && out.size() == c.rows && w.size() == x.rows, "kernel_fused");
        kernel_fused(x, c, gamma, v.data(), w.data(), out.data());
    }
    void features_expm1_sum(const Buffer& f, std::int64_t cols, const double* v, std::int64_t b, const Buffer& w,
                            double* out) const override {
        require_sizes(cols > 0 && f.size() == w.size() * cols, "features_expm1_sum");
        features_expm1_sum(MatrixView(f.data(), w.size(), cols), v, b, w.data(), out);
    }
    void symv(const Buffer& a, const Buffer& x, Buffer& y) const override {
        const std::int64_t n = x.size();
        require_sizes(y.size() == n && a.size() == n * n, "symv");
        for (std::int64_t i = 0; i < n; ++i) {
            const double* row = a.data() + i * n;
            double acc = 0.0;
            for (std::int64_t j = 0; j < n; ++j) acc += row[j] * x.data()[j];
            y.data()[i] = acc;
        }
    }
    void trsv_upper(const Buffer& u, bool trans, Buffer& b) const override {
        require_sizes(u.size() == b.size() * b.size(), "trsv_upper");
        dense::trsv_upper(u.data(), static_cast<int>(b.size()), trans, b.data());
    }
    void trmv_upper(const Buffer& u, bool trans, Buffer& x) const override {
        require_sizes(u.size() == x.size() * x.size(), "trmv_upper");
        dense::trmv_upper(u.data(), static_cast<int>(x.size()), trans, x.data());
    }
    void scale_columns_upper(Buffer& u, const Buffer& s) const override {
        const std::int64_t n = s.size();
        require_sizes(u.size() == n * n, "scale_columns_upper");
        for (std::int64_t j = 0; j < n; ++j) {
            double* col = u.data() + j * n;
            for (std::int64_t i = 0; i <= j; ++i) col[i] *= s.data()[j];
        }
    }
    void divide_shift_upper(Buffer& a, int n, double div, double shift) const override {
        require_sizes(a.size() == static_cast<std::int64_t>(n) * n, "divide_shift_upper");
        for (std::int64_t j = 0; j < n; ++j) {
            double* col = a.data() + j * n;
            for (std::int64_t i = 0; i <= j; ++i) col[i] /= div;
            col[j] += shift;
        }
    }
    // LAPACK (dpotrf, dlauum), as the solver has always used.
    int cholesky_upper(Buffer& a, int n) const override {
        require_sizes(a.size() == static_cast<std::int64_t>(n) * n, "cholesky_upper");
        return dense::cholesky_upper(a.data(), n, threads_);
    }
    void lauum_upper(Buffer& u, int n) const override {
        require_sizes(u.size() == static_cast<std::int64_t>(n) * n, "lauum_upper");
        dense::lauum_upper(u.data(), n, threads_);
    }

private:
    int threads_;

    // out (r x r, symmetric) = sum over groups of the lower triangles at partial + g * stride.
    static void sum_lower(const double* partial, std::int64_t groups, std::int64_t stride, std::int64_t r,
                          double* out) {
        for (std::int64_t a = 0; a < r; ++a)
            for (std::int64_t b = 0; b <= a; ++b) {
                double s = 0.0;
                for (std::int64_t gi = 0; gi < groups; ++gi) s += partial[gi * stride + a * r + b];
                out[a * r + b] = s;
                out[b * r + a] = s;
            }
    }

    // (rows, b) row-major -> (rows, bp), zero-padded columns.
    static std::vector<double> pad_columns(const double* v, std::int64_t rows, std::int64_t b, std::int64_t bp) {
        std::vector<double> out(static_cast<size_t>(rows * bp), 0.0);
        for (std::int64_t j = 0; j < rows; ++j) std::copy(v + j * b, v + (j + 1) * b, out.begin() + j * bp);
        return out;
    }

    // Independent rows: any partition is deterministic. Chunks of 64 rows, dynamic schedule.
    template <class F>
    void for_row_chunks(std::int64_t n, F&& body, std::int64_t mp) const {
        constexpr std::int64_t chunk = 64;
        const std::int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel num_threads(threads_) if (nchunks > 1)
        {
            std::vector<double> row(2 * mp);  // room for two kernel rows
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t ch = 0; ch < nchunks; ++ch) body(ch * chunk, std::min(n, (ch + 1) * chunk), row.data());
        }
    }

    // Row reductions: a fixed partition into groups (a function of n only), each group's
    // partial (width entries) accumulated in row order, partials summed in group order;
    // out gets the first out_size entries. row_size: the per-thread scratch of the body.
    template <class F>
    void reduce_groups(std::int64_t n, std::int64_t width, std::int64_t out_size, std::int64_t row_size, double* out,
                       F&& body) const {
        const std::int64_t groups =
            std::max<std::int64_t>(1, std::min(kMaxGroups, (n + kMinRowsPerGroup - 1) / kMinRowsPerGroup));
        std::vector<double> partial(static_cast<size_t>(groups * width), 0.0);
#pragma omp parallel num_threads(threads_) if (groups > 1)
        {
            std::vector<double> row(row_size);
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t g = 0; g < groups; ++g) {
                const std::int64_t r0 = n * g / groups, r1 = n * (g + 1) / groups;
                body(r0, r1, partial.data() + g * width, row.data());
            }
        }
        std::fill(out, out + out_size, 0.0);
        for (std::int64_t g = 0; g < groups; ++g) {
            const double* p = partial.data() + g * width;
            for (std::int64_t j = 0; j < out_size; ++j) out[j] += p[j];
        }
    }
};

}  // namespace

void KernelOps::kernel_gram_mm(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b,
                               const double* w, double* out) const {
    std::vector<double> col(static_cast<size_t>(c.rows)), res(static_cast<size_t>(c.rows));
    for (std::int64_t q = 0; q < b; ++q) {
        for (std::int64_t j = 0; j < c.rows; ++j) col[j] = v[j * b + q];
        kernel_fused(x, c, gamma, col.data(), w, res.data());
        for (std::int64_t j = 0; j < c.rows; ++j) out[j * b + q] = res[j];
    }
}

void KernelOps::require_sizes(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string(what) + ": buffer sizes do not match");
}

int resolve_threads(int threads) {
#ifdef _OPENMP
    return threads > 0 ? threads : omp_get_num_procs();
#else
    (void)threads;
    return 1;
#endif
}

std::unique_ptr<KernelOps> detail::make_cpu_kernel_ops(int threads) { return std::make_unique<CpuKernelOps>(threads); }

}  // namespace fastnplm
