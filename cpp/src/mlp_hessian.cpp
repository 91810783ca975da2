// Loss, gradient and exact Hessian of one network (mlp_hessian.hpp has the formulas).
//
// Indices. Layers m = 0..L-1 (layer m maps a~_m = (a_m, 1), in_m + 1 rows, to z_m; a_0 = x). Units
// are numbered across layers, U[m] the first of layer m, NU in all (the output is the last).
// Parameters are handled in a "Kronecker order" q(m, u, v) = w_off[m] + u (in_m + 1) + v (v = in_m
// the bias) and mapped to mlp.hpp's flat order (W_m row-major, then b_m) at the end.
//
// Per block of E events (all per-event arrays are [row][event], events contiguous):
//   forward: a~_m, sigma' and sigma'' of every hidden unit, f; then c = dL/df and gamma =
//            d2L/df2 (w e^f, w e^f on R; -1, 0 on D), the loss terms;
//   backward: delta_i = df/dz_i of every unit, abar (df/da) on the way; the gradient is
//            sum_e c delta_{m,u} a~_{m-1,v}: one dgemm per layer, A~_m^T (c delta_m);
//   Hessian: G_l[k][i] = dz_{l,k}/dz_i for units i of layers < l (forward chain through sigma');
//            s_i = c abar_i sigma''_i for hidden units, gamma for the output;
//            K[i][j] = sum over units k (layer l) of s_k g_k[i] g_k[j], g_k = dz_k/dz over the
//            units up to k's layer (G_l, and 1 at k itself);
//            Psi_m[u][q] for the columns q = (m', u', v') from unit (m, u)'s own first one on:
//              K[(m,u),(m',u')] a~_{m'-1,v'}
//              + [m' > m, v' < in_m'] c delta_{m',u'} sigma'_{m'-1,v'} dz_{m'-1,v'}/dz_{m,u},
//            the second line the cross terms of the products W_m' a_{m'-1};
//            H[(m,u,v), q] += sum_e a~_{m-1,v} Psi_m[u][q]: one dgemm per unit (in_m + 1 rows,
//            events as the inner dimension; small enough for OpenBLAS's no-packing kernels).
// Each unit's rows are computed from its own first column on (the upper triangle in Kronecker
// order, and its own (in + 1) x (in + 1) block in full); the output takes the upper triangle
// and mirrors it, so it is symmetric bit for bit.
//
// Cost per event, multiply-adds: the products ~ sum over units of (in + 1) x (columns from the
// unit's on) ~ P^2 / 2 (5-5-5-5-1: ~4900), K ~ sum over unit pairs of the units above them
// (~1500), Psi ~ P per unit. Measured (one thread, AMD EPYC Zen 4, loaded machine): 1-4-1 with
// 202000 events ~7-10 ms, 5-5-5-5-1 with 120000 events ~90 ms.
#include "fastnplm/mlp_hessian.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "blas_names.hpp"
#include "dense.hpp"
#include "fastnplm/kernel_ops.hpp"  // resolve_threads
#include "hot.hpp"
#include "vexp.hpp"

namespace fastnplm {
namespace {

constexpr std::int64_t kGroupEvents = 4096;  // target events per group (a task)
constexpr std::int64_t kMaxGroups = 32;      // per event set
// Events per block: the widest Psi row block (P columns x E doubles) stays within this many
// doubles (32 KiB, L1), E within [kMinBlock, kMaxBlock]; a function of the shape only.
constexpr std::int64_t kPsiBudget = 16384;
constexpr std::int64_t kMinBlock = 32, kMaxBlock = 512;
constexpr std::int64_t kChunk = 8;  // events per register accumulator (E is a multiple)

struct Net {
    std::int64_t d = 0, L = 0, P = 0, NU = 0, E = 0;
    std::vector<std::int64_t> in, out, w_off, b_off, U, nc;  // per layer; nc = P - w_off: Psi columns
    std::vector<std::int64_t> a_off, g_off;                  // per layer: offsets (in E-vectors) of a~_m, G_m
    std::vector<std::int64_t> q_layer, q_unit, q_v, flat;    // per Kronecker index q
    std::vector<std::int64_t> grad_off;                      // per layer: offset of its gradient in a partial
    std::vector<std::int64_t> hess_off, hess_q0;             // per unit: offset of its rows, their first column
    std::int64_t a_rows = 0, g_rows = 0, part = 0;
};

Net make_net(const MlpShape& s) {
    s.validate();
    Net n;
    n.d = s.d;
    n.L = static_cast<std::int64_t>(s.hidden.size()) + 1;
    std::int64_t nin = s.d, off = 0, units = 0;
    for (std::int64_t m = 0; m < n.L; ++m) {
        const std::int64_t nout = m + 1 < n.L ? s.hidden[m] : 1;
        n.in.push_back(nin);
        n.out.push_back(nout);
        n.w_off.push_back(off);
        n.b_off.push_back(off + nin * nout);
        n.U.push_back(units);
        off += (nin + 1) * nout;
        units += nout;
        nin = nout;
    }
    n.P = off;
    n.NU = units;
    for (std::int64_t m = 0; m < n.L; ++m) {
        n.nc.push_back(n.P - n.w_off[m]);
        n.a_off.push_back(n.a_rows);
        n.a_rows += n.in[m] + 1;
        n.g_off.push_back(n.g_rows);
        n.g_rows += n.out[m] * n.U[m];
        for (std::int64_t u = 0; u < n.out[m]; ++u)
            for (std::int64_t v = 0; v <= n.in[m]; ++v) {
                n.q_layer.push_back(m);
                n.q_unit.push_back(u);
                n.q_v.push_back(v);
                n.flat.push_back(v < n.in[m] ? n.w_off[m] + u * n.in[m] + v : n.b_off[m] + u);
            }
    }
    std::int64_t e = kMinBlock;
    while (e * 2 <= kMaxBlock && e * 2 * n.P <= kPsiBudget) e *= 2;
    n.E = e;
    n.part = 1;
    for (std::int64_t m = 0; m < n.L; ++m) {
        n.grad_off.push_back(n.part);
        n.part += (n.in[m] + 1) * n.out[m];
    }
    for (std::int64_t m = 0; m < n.L; ++m)
        for (std::int64_t u = 0; u < n.out[m]; ++u) {
            // unit (m, u)'s rows (in_m + 1 of them) from its own first column on: the upper triangle
            const std::int64_t q0 = n.w_off[m] + u * (n.in[m] + 1);
            n.hess_off.push_back(n.part);
            n.hess_q0.push_back(q0);
            n.part += (n.in[m] + 1) * (n.P - q0);
        }
    return n;
}

// Per-thread arrays of one block, each a list of E-vectors.
struct Scratch {
    std::vector<double> a, s1, s2, f, c, gam, w, lacc, delta, cd, abar, st, g, k, x, psi;
    std::vector<std::int64_t> layer_of;  // of each unit
    explicit Scratch(const Net& n)
        : a(n.a_rows * n.E),
          s1(n.NU * n.E),
          s2(n.NU * n.E),
          f(n.E),
          c(n.E),
          gam(n.E),
          w(n.E),
          lacc(n.E),
          delta(n.NU * n.E),
          cd(n.NU * n.E),
          abar(n.NU * n.E),
          st(n.NU * n.E),
          g(std::max<std::int64_t>(n.g_rows, 1) * n.E),
          k(n.NU * n.NU * n.E),
          x(n.P * n.E),
          psi(n.P * n.E) {
        for (std::int64_t m = 0; m < n.L; ++m) layer_of.insert(layer_of.end(), n.out[m], m);
    }
};

void gemm_tn(std::int64_t m, std::int64_t n, std::int64_t k, const double* a, const double* b, double* c) {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    const double one = 1.0;
    FASTNPLM_F77(dgemm_)("T", "N", &mi, &ni, &ki, &one, a, &ki, b, &ki, &one, c, &mi, 1, 1);
}

// One block: events [e0, e0 + cnt) of x (weights w, or data when w == nullptr) into the partial
// `part` (loss lanes in s.lacc).
FASTNPLM_HOT void run_block(const Net& n, const double* p, MatrixView x, const double* wts, std::int64_t e0,
                            std::int64_t cnt, bool grad, bool hess, Scratch& s, double* part) {
    const std::int64_t E = n.E, L = n.L, d = n.d;
    double* __restrict A = s.a.data();
    // a~_0 = (x, 1); padding slots are zero events of weight 0
    for (std::int64_t k = 0; k < d; ++k)
        for (std::int64_t e = 0; e < E; ++e) A[k * E + e] = e < cnt ? x.row(e0 + e)[k] : 0.0;
    for (std::int64_t e = 0; e < E; ++e) A[d * E + e] = 1.0;
    // forward
    double* __restrict f = s.f.data();
    for (std::int64_t m = 0; m < L; ++m) {
        const std::int64_t nin = n.in[m], nout = n.out[m];
        const double* W = p + n.w_off[m];
        const double* b = p + n.b_off[m];
        const double* __restrict ain = A + n.a_off[m] * E;
        const bool last = m + 1 == L;
        double* __restrict zo = last ? f : A + n.a_off[m + 1] * E;
        for (std::int64_t u = 0; u < nout; ++u) {
            double* __restrict z = zo + u * E;
            for (std::int64_t e = 0; e < E; ++e) z[e] = b[u];
            for (std::int64_t v = 0; v < nin; ++v) {
                const double wv = W[u * nin + v];
                const double* __restrict av = ain + v * E;
#pragma omp simd
                for (std::int64_t e = 0; e < E; ++e) z[e] += wv * av[e];
            }
        }
        if (last) break;
        for (std::int64_t u = 0; u < nout; ++u) {
            double* __restrict z = zo + u * E;
            double* __restrict d1 = s.s1.data() + (n.U[m] + u) * E;
            double* __restrict d2 = s.s2.data() + (n.U[m] + u) * E;
#pragma omp simd
            for (std::int64_t e = 0; e < E; ++e) {
                // sigma from ex = exp(-|z|) <= 1 without cancellation; sigma' = ex / (1 + ex)^2
                const double ex = detail::vexp<detail::ExpClamp::low>(-std::fabs(z[e]));
                const double r = 1.0 / (1.0 + ex);
                const double sg = z[e] >= 0.0 ? r : ex * r;
                const double sp = ex * r * r;
                z[e] = sg;
                d1[e] = sp;
                d2[e] = sp * (1.0 - 2.0 * sg);
            }
        }
        for (std::int64_t e = 0; e < E; ++e) zo[nout * E + e] = 1.0;
    }
    // c = dL/df, gamma = d2L/df2 and the loss terms
    double* __restrict c = s.c.data();
    double* __restrict gam = s.gam.data();
    double* __restrict lacc = s.lacc.data();
    if (wts != nullptr) {
        double* __restrict w = s.w.data();
        for (std::int64_t e = 0; e < E; ++e) w[e] = e < cnt ? wts[e0 + e] : 0.0;
#pragma omp simd
        for (std::int64_t e = 0; e < E; ++e) {
            const double ef = detail::vexp(f[e]);
            c[e] = w[e] * ef;
            gam[e] = c[e];
            lacc[e] += w[e] * (ef - 1.0);
        }
    } else {
        for (std::int64_t e = 0; e < E; ++e) {
            const bool in = e < cnt;
            c[e] = in ? -1.0 : 0.0;
            gam[e] = 0.0;
            lacc[e] -= in ? f[e] : 0.0;
        }
    }
    if (!grad) return;
    // backward: delta_i = df/dz_i; abar (df/da) of the hidden units on the way
    double* __restrict delta = s.delta.data();
    double* __restrict abar = s.abar.data();
    double* __restrict cd = s.cd.data();
    const std::int64_t out_unit = n.NU - 1;
    for (std::int64_t e = 0; e < E; ++e) delta[out_unit * E + e] = 1.0;
    for (std::int64_t m = L - 1; m >= 1; --m) {
        const std::int64_t nin = n.in[m], nout = n.out[m];
        const double* W = p + n.w_off[m];
        for (std::int64_t v = 0; v < nin; ++v) {
            const std::int64_t i = n.U[m - 1] + v;
            double* __restrict ab = abar + i * E;
            for (std::int64_t e = 0; e < E; ++e) ab[e] = 0.0;
            for (std::int64_t u = 0; u < nout; ++u) {
                const double wuv = W[u * nin + v];
                const double* __restrict du = delta + (n.U[m] + u) * E;
#pragma omp simd
                for (std::int64_t e = 0; e < E; ++e) ab[e] += wuv * du[e];
            }
            const double* __restrict d1 = s.s1.data() + i * E;
            double* __restrict di = delta + i * E;
#pragma omp simd
            for (std::int64_t e = 0; e < E; ++e) di[e] = d1[e] * ab[e];
        }
    }
    for (std::int64_t i = 0; i < n.NU; ++i)
#pragma omp simd
        for (std::int64_t e = 0; e < E; ++e) cd[i * E + e] = c[e] * delta[i * E + e];
    for (std::int64_t m = 0; m < L; ++m)
        gemm_tn(n.in[m] + 1, n.out[m], E, A + n.a_off[m] * E, cd + n.U[m] * E, part + n.grad_off[m]);
    if (!hess) return;
    // G_l[k][i] = dz_{l,k}/dz_i for the units i of layers < l
    double* __restrict G = s.g.data();
    for (std::int64_t l = 1; l < L; ++l) {
        const std::int64_t nin = n.in[l], Ul = n.U[l], Up = n.U[l - 1];
        const double* W = p + n.w_off[l];
        double* __restrict Gl = G + n.g_off[l] * E;
        const double* __restrict Gp = G + n.g_off[l - 1] * E;
        for (std::int64_t k = 0; k < n.out[l]; ++k) {
            double* __restrict row = Gl + k * Ul * E;
            for (std::int64_t j = 0; j < nin; ++j) {  // the units of layer l - 1: W[k, j] sigma'_j
                const double wkj = W[k * nin + j];
                const double* __restrict d1 = s.s1.data() + (Up + j) * E;
                double* __restrict t = row + (Up + j) * E;
#pragma omp simd
                for (std::int64_t e = 0; e < E; ++e) t[e] = wkj * d1[e];
            }
            for (std::int64_t i = 0; i < Up; ++i) {  // earlier units: through layer l - 1
                double* __restrict t = row + i * E;
                for (std::int64_t e = 0; e < E; ++e) t[e] = 0.0;
                for (std::int64_t j = 0; j < nin; ++j) {
                    const double* __restrict tj = row + (Up + j) * E;
                    const double* __restrict gj = Gp + (j * Up + i) * E;
#pragma omp simd
                    for (std::int64_t e = 0; e < E; ++e) t[e] += tj[e] * gj[e];
                }
            }
        }
    }
    // s_i: c abar sigma'' of hidden units, gamma for the output
    double* __restrict st = s.st.data();
    for (std::int64_t i = 0; i < out_unit; ++i)
#pragma omp simd
        for (std::int64_t e = 0; e < E; ++e) st[i * E + e] = c[e] * abar[i * E + e] * s.s2[i * E + e];
    for (std::int64_t e = 0; e < E; ++e) st[out_unit * E + e] = gam[e];
    // K[i][j] (i <= j; i in layer li, j in layer lj, li <= lj) = [i == j] s_i + [li < lj] s_j G_lj[j][i]
    //   + sum over the units k of layers l > lj of s_k G_l[k][i] G_l[k][j], a chunk of events at a time
    const std::int64_t NU = n.NU;
    double* __restrict K = s.k.data();
    std::vector<std::int64_t>& layer_of = s.layer_of;
    for (std::int64_t i = 0; i < NU; ++i)
        for (std::int64_t j = i; j < NU; ++j) {
            const std::int64_t li = layer_of[i], lj = layer_of[j];
            double* __restrict kij = K + (i * NU + j) * E;
            for (std::int64_t e0 = 0; e0 < E; e0 += kChunk) {
                double acc[kChunk];
                if (i == j)
                    for (std::int64_t e = 0; e < kChunk; ++e) acc[e] = st[j * E + e0 + e];
                else if (li < lj) {
                    const double* __restrict gji = G + (n.g_off[lj] + (j - n.U[lj]) * n.U[lj] + i) * E + e0;
                    for (std::int64_t e = 0; e < kChunk; ++e) acc[e] = st[j * E + e0 + e] * gji[e];
                } else
                    for (std::int64_t e = 0; e < kChunk; ++e) acc[e] = 0.0;
                for (std::int64_t l = lj + 1; l < L; ++l) {
                    const std::int64_t Ul = n.U[l];
                    for (std::int64_t k = 0; k < n.out[l]; ++k) {
                        const double* __restrict sk = st + (Ul + k) * E + e0;
                        const double* __restrict gi = G + (n.g_off[l] + k * Ul + i) * E + e0;
                        const double* __restrict gj = G + (n.g_off[l] + k * Ul + j) * E + e0;
#pragma omp simd
                        for (std::int64_t e = 0; e < kChunk; ++e) acc[e] += sk[e] * gi[e] * gj[e];
                    }
                }
                for (std::int64_t e = 0; e < kChunk; ++e) kij[e0 + e] = acc[e];
            }
        }
    // cross factors X[q] = c delta_{m',u'} sigma'_{m'-1,v'} for weights q = (m' >= 1, u', v' < in)
    double* __restrict X = s.x.data();
    for (std::int64_t q = n.w_off[1]; q < n.P; ++q) {  // L >= 2: layer 0 has no cross terms
        const std::int64_t m = n.q_layer[q], v = n.q_v[q];
        if (m == 0 || v == n.in[m]) continue;
        const double* __restrict cdu = cd + (n.U[m] + n.q_unit[q]) * E;
        const double* __restrict d1 = s.s1.data() + (n.U[m - 1] + v) * E;
        double* __restrict xq = X + q * E;
#pragma omp simd
        for (std::int64_t e = 0; e < E; ++e) xq[e] = cdu[e] * d1[e];
    }
    // Psi rows of each unit (m, u), from its own first column on, and their product with a~_m
    double* __restrict psi = s.psi.data();
    std::int64_t unit = 0;
    for (std::int64_t m = 0; m < L; ++m)
        for (std::int64_t u = 0; u < n.out[m]; ++u, ++unit) {
            const std::int64_t i = n.U[m] + u, q0 = n.hess_q0[unit], width = n.P - q0;
            for (std::int64_t qq = 0; qq < width; ++qq) {
                const std::int64_t q = q0 + qq, m2 = n.q_layer[q], v2 = n.q_v[q];
                const std::int64_t j = n.U[m2] + n.q_unit[q];
                const double* __restrict kij = K + (i * NU + j) * E;  // i <= j: columns from unit i's on
                const double* __restrict av = A + (n.a_off[m2] + v2) * E;
                double* __restrict out = psi + qq * E;
                if (m2 <= m || v2 == n.in[m2]) {
#pragma omp simd
                    for (std::int64_t e = 0; e < E; ++e) out[e] = kij[e] * av[e];
                    continue;
                }
                const double* __restrict xq = X + q * E;
                if (m2 - 1 == m) {  // dz_{m,v2}/dz_{m,u}: 1 at v2 == u
                    if (v2 == u) {
#pragma omp simd
                        for (std::int64_t e = 0; e < E; ++e) out[e] = kij[e] * av[e] + xq[e];
                    } else {
#pragma omp simd
                        for (std::int64_t e = 0; e < E; ++e) out[e] = kij[e] * av[e];
                    }
                } else {
                    const double* __restrict gv = G + (n.g_off[m2 - 1] + v2 * n.U[m2 - 1] + i) * E;
#pragma omp simd
                    for (std::int64_t e = 0; e < E; ++e) out[e] = kij[e] * av[e] + xq[e] * gv[e];
                }
            }
            gemm_tn(n.in[m] + 1, width, E, A + n.a_off[m] * E, psi, part + n.hess_off[unit]);
        }
}

void check_set(MatrixView x, std::int64_t d, const std::string& name) {
    if (x.rows < 1) throw std::invalid_argument("mlp_loss_grad_hess: " + name + " is empty (0 events)");
    if (x.cols != d)
        throw std::invalid_argument("mlp_loss_grad_hess: " + name + " has " + std::to_string(x.cols) +
                                    " features but the network takes " + std::to_string(d));
    if (x.data == nullptr) throw std::invalid_argument("mlp_loss_grad_hess: " + name + " has no data pointer");
}

}  // namespace

void mlp_loss_grad_hess(const MlpShape& shape, MatrixView reference, const double* reference_weights, MatrixView data,
                        const double* params, double* loss, double* grad, double* hess, int threads) {
    const Net n = make_net(shape);
    check_set(reference, n.d, "reference");
    check_set(data, n.d, "data");
    if (reference_weights == nullptr) throw std::invalid_argument("mlp_loss_grad_hess: reference weights are missing");
    if (params == nullptr) throw std::invalid_argument("mlp_loss_grad_hess: params is null");
    if (loss == nullptr) throw std::invalid_argument("mlp_loss_grad_hess: loss is null");
    const bool want_hess = hess != nullptr, want_grad = grad != nullptr || want_hess;
    dense::single_threaded_blas();
    // tasks: the groups of the reference, then those of the data (fixed partitions)
    struct Set {
        MatrixView x;
        const double* w;
        std::int64_t nb, groups;
    };
    auto set_of = [&](MatrixView x, const double* w) {
        const std::int64_t nb = (x.rows + n.E - 1) / n.E;
        return Set{x, w, nb, std::clamp<std::int64_t>((x.rows + kGroupEvents - 1) / kGroupEvents, 1, kMaxGroups)};
    };
    const Set sets[2] = {set_of(reference, reference_weights), set_of(data, nullptr)};
    const std::int64_t n_tasks = sets[0].groups + sets[1].groups;
    std::vector<double> parts(static_cast<std::size_t>(n_tasks * n.part), 0.0);
    const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if (n_tasks > 1 && nt > 1)
    {
        Scratch s(n);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t t = 0; t < n_tasks; ++t) {
            const Set& st = t < sets[0].groups ? sets[0] : sets[1];
            const std::int64_t g = t < sets[0].groups ? t : t - sets[0].groups;
            const std::int64_t b0 = st.nb * g / st.groups, b1 = st.nb * (g + 1) / st.groups;
            double* part = parts.data() + t * n.part;
            std::fill(s.lacc.begin(), s.lacc.end(), 0.0);
            for (std::int64_t b = b0; b < b1; ++b) {
                const std::int64_t e0 = b * n.E;
                run_block(n, params, st.x, st.w, e0, std::min(n.E, st.x.rows - e0), want_grad, want_hess, s, part);
            }
            double l = 0.0;
            for (std::int64_t e = 0; e < n.E; ++e) l += s.lacc[e];
            part[0] = l;
        }
    }
    // partials in task order: the reference's, then the data's, each set summed on its own
    const std::int64_t used = want_hess ? n.part : want_grad ? n.hess_off[0] : 1;
    std::vector<double> tot(static_cast<std::size_t>(used), 0.0);
    for (std::int64_t j = 0; j < used; ++j) {
        double r = 0.0, dd = 0.0;
        for (std::int64_t t = 0; t < sets[0].groups; ++t) r += parts[t * n.part + j];
        for (std::int64_t t = sets[0].groups; t < n_tasks; ++t) dd += parts[t * n.part + j];
        tot[j] = r + dd;
    }
    *loss = tot[0];
    if (grad != nullptr)
        for (std::int64_t m = 0; m < n.L; ++m)
            for (std::int64_t u = 0; u < n.out[m]; ++u)
                for (std::int64_t v = 0; v <= n.in[m]; ++v) {
                    const std::int64_t q = n.w_off[m] + u * (n.in[m] + 1) + v;
                    grad[n.flat[q]] = tot[n.grad_off[m] + u * (n.in[m] + 1) + v];
                }
    if (!want_hess) return;
    const std::int64_t P = n.P;
    std::int64_t unit = 0;
    for (std::int64_t m = 0; m < n.L; ++m)
        for (std::int64_t u = 0; u < n.out[m]; ++u, ++unit) {
            // column-major (in_m + 1) x width: row v is parameter q0 + v, column c parameter q0 + c
            const std::int64_t rows = n.in[m] + 1, q0 = n.hess_q0[unit], width = P - q0;
            const double* C = tot.data() + n.hess_off[unit];
            for (std::int64_t v = 0; v < rows; ++v) {
                const std::int64_t fr = n.flat[q0 + v];
                for (std::int64_t c = v; c < width; ++c) {
                    const double h = C[v + rows * c];
                    const std::int64_t fc = n.flat[q0 + c];
                    hess[fr * P + fc] = h;
                    hess[fc * P + fr] = h;
                }
            }
        }
}

}  // namespace fastnplm
