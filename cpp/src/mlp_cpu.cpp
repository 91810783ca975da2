// CPU backend of the MLP primitives: loss + gradient of B networks (fused forward and
// backward pass), and the forward pass alone.
//
// Layout: events go through the network in blocks of kBlock, stored transposed
// (xs[k * kBlock + e] = feature k of event e of the block), so that every loop below runs
// over the events of a block with unit stride and vectorises; the activations, sigmoid
// derivatives and back-propagated deltas of a block live in small per-thread buffers (L1).
// Gradient and loss sums are kept lane-wise (one accumulator per event slot of a block,
// gacc[p * kBlock + e]) across the blocks of a group, so the hot loop has only independent
// vertical FMAs; each group's lane sums are reduced in a fixed order at its end.
//
// The reference is cut into groups (a function of N_R only). A task takes one group,
// transposes its events once and runs every network over them (the group stays in L2), so
// the reference is read from memory once per pass for all B networks. Each network's data
// is cut into groups by its own size. Partials (per group, per network) are summed in group
// order: any thread count, and any batch a network shares the call with, gives the same bits.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastnplm/kernel_ops.hpp"  // resolve_threads
#include "fastnplm/mlp.hpp"
#include "vexp.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(FASTNPLM_NO_TARGET_CLONES)
#define FASTNPLM_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTNPLM_HOT
#endif
#if defined(__GNUC__)
#define FASTNPLM_INLINE __attribute__((always_inline)) inline
#else
#define FASTNPLM_INLINE inline
#endif

namespace fastnplm {
namespace {

constexpr std::int64_t kBlock = 32;         // events per block (SIMD loops run over these)
constexpr std::int64_t kGroupEvents = 2048;  // target events per group
constexpr std::int64_t kMaxGroups = 64;

struct Layout {
    std::int64_t d = 0, layers = 0, n_params = 0, hidden_total = 0, max_width = 0;
    std::vector<std::int64_t> in, out, w_off, b_off, act_off;  // per layer
};

Layout make_layout(const MlpShape& s) {
    s.validate();
    Layout L;
    L.d = s.d;
    L.layers = static_cast<std::int64_t>(s.hidden.size()) + 1;
    std::int64_t nin = s.d, off = 0, act = 0;
    L.max_width = s.d;
    for (std::int64_t l = 0; l < L.layers; ++l) {
        const std::int64_t nout = l + 1 < L.layers ? s.hidden[l] : 1;
        L.in.push_back(nin);
        L.out.push_back(nout);
        L.w_off.push_back(off);
        off += nin * nout;
        L.b_off.push_back(off);
        off += nout;
        L.act_off.push_back(act);
        if (l + 1 < L.layers) act += nout * kBlock;
        L.max_width = std::max(L.max_width, nout);
        nin = nout;
    }
    L.n_params = off;
    L.hidden_total = act / kBlock;
    return L;
}

std::int64_t n_groups(std::int64_t n) {
    return std::max<std::int64_t>(1, std::min(kMaxGroups, (n + kGroupEvents - 1) / kGroupEvents));
}

// Per-thread buffers.
struct Scratch {
    std::vector<double> xs, act, der, da, db, gacc, lacc, f, q;
    Scratch(const Layout& L, std::int64_t max_group)
        : xs(((max_group + kBlock - 1) / kBlock) * kBlock * L.d),
          act(L.hidden_total * kBlock),
          der(L.hidden_total * kBlock),
          da(L.max_width * kBlock),
          db(L.max_width * kBlock),
          gacc(L.n_params * kBlock),
          lacc(kBlock),
          f(kBlock),
          q(kBlock) {}
};

// Events [r0, r1) of x into blocks of transposed features, zero-padded: block i at
// xs + i * d * kBlock. Returns the number of blocks.
std::int64_t transpose_events(MatrixView x, std::int64_t r0, std::int64_t r1, double* xs) {
    const std::int64_t d = x.cols, n = r1 - r0, nb = (n + kBlock - 1) / kBlock;
    std::fill(xs, xs + nb * d * kBlock, 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
        const double* row = x.row(r0 + i);
        double* blk = xs + (i / kBlock) * d * kBlock + i % kBlock;
        for (std::int64_t k = 0; k < d; ++k) blk[k * kBlock] = row[k];
    }
    return nb;
}

// Forward pass of one block: hidden activations act (and sigmoid derivatives der when
// wanted), output f. sigmoid(z) from e = exp(-|z|): 1/(1+e) for z >= 0, e/(1+e) below, and
// sigmoid'(z) = e/(1+e)^2, all without cancellation.
template <bool kDer>
FASTNPLM_INLINE void forward_block(const Layout& L, const double* __restrict p, const double* __restrict xs,
                                   double* __restrict act, double* __restrict der, double* __restrict f) {
    const double* in = xs;
    for (std::int64_t l = 0; l < L.layers; ++l) {
        const std::int64_t nin = L.in[l], nout = L.out[l];
        const double* __restrict W = p + L.w_off[l];
        const double* __restrict b = p + L.b_off[l];
        const bool last = l + 1 == L.layers;
        double* __restrict out = last ? f : act + L.act_off[l];
        for (std::int64_t j = 0; j < nout; ++j) {
            double* __restrict z = out + j * kBlock;
            const double bj = b[j];
            const double w0 = W[j * nin];
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) z[e] = bj + w0 * in[e];
            for (std::int64_t k = 1; k < nin; ++k) {
                const double wk = W[j * nin + k];
                const double* __restrict ik = in + k * kBlock;
#pragma omp simd
                for (std::int64_t e = 0; e < kBlock; ++e) z[e] += wk * ik[e];
            }
            if (!last) {
                double* __restrict dz = der + L.act_off[l] + j * kBlock;
#pragma omp simd
                for (std::int64_t e = 0; e < kBlock; ++e) {
                    const double v = z[e];
                    const double ex = detail::vexp_nonpos(-std::fabs(v));
                    const double r = 1.0 / (1.0 + ex);
                    z[e] = v >= 0.0 ? r : ex * r;
                    if (kDer) dz[e] = ex * r * r;
                }
            }
        }
        in = out;
    }
}

// Loss and lane-wise gradient of one network over the blocks in xs (nb blocks, n events;
// slots past n are padding). wt: per-event reference weights of these events (kRef), or
// nullptr for data. Adds to s.gacc / s.lacc.
template <bool kRef, bool kGrad>
FASTNPLM_INLINE void run_blocks(const Layout& L, const double* __restrict p, const double* xs, std::int64_t nb,
                                std::int64_t n, const double* wt, Scratch& s) {
    double* __restrict f = s.f.data();
    double* __restrict q = s.q.data();
    double* __restrict lacc = s.lacc.data();
    double* __restrict gacc = s.gacc.data();
    for (std::int64_t ib = 0; ib < nb; ++ib) {
        const double* xb = xs + ib * L.d * kBlock;
        forward_block<kGrad>(L, p, xb, s.act.data(), s.der.data(), f);
        const std::int64_t len = std::min(kBlock, n - ib * kBlock);
        if (kRef) {
            // q = dL/df = w e^f; loss term w (e^f - 1). Padding slots carry w = 0.
            double wb[kBlock];
            for (std::int64_t e = 0; e < kBlock; ++e) wb[e] = e < len ? wt[ib * kBlock + e] : 0.0;
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                const double ef = detail::vexp(f[e]);
                q[e] = wb[e] * ef;
                lacc[e] += wb[e] * (ef - 1.0);
            }
        } else {
            double mb[kBlock];
            for (std::int64_t e = 0; e < kBlock; ++e) mb[e] = e < len ? 1.0 : 0.0;
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                q[e] = -mb[e];
                lacc[e] -= mb[e] * f[e];
            }
        }
        if (!kGrad) continue;
        // Backward: delta of layer l (out_l x kBlock), starting from the output's q.
        const double* delta = q;
        for (std::int64_t l = L.layers - 1; l >= 0; --l) {
            const std::int64_t nin = L.in[l], nout = L.out[l];
            const double* in = l == 0 ? xb : s.act.data() + L.act_off[l - 1];
            double* __restrict gW = gacc + L.w_off[l] * kBlock;
            double* __restrict gb = gacc + L.b_off[l] * kBlock;
            for (std::int64_t j = 0; j < nout; ++j) {
                const double* __restrict dj = delta + j * kBlock;
                double* __restrict gbj = gb + j * kBlock;
#pragma omp simd
                for (std::int64_t e = 0; e < kBlock; ++e) gbj[e] += dj[e];
                for (std::int64_t k = 0; k < nin; ++k) {
                    const double* __restrict ik = in + k * kBlock;
                    double* __restrict g = gW + (j * nin + k) * kBlock;
#pragma omp simd
                    for (std::int64_t e = 0; e < kBlock; ++e) g[e] += dj[e] * ik[e];
                }
            }
            if (l == 0) break;
            // delta_{l-1}[k] = (sum_j W[j, k] delta_l[j]) * sigmoid'(z_{l-1}[k])
            const double* __restrict W = p + L.w_off[l];
            double* __restrict nd = delta == s.da.data() ? s.db.data() : s.da.data();
            const double* __restrict dv = s.der.data() + L.act_off[l - 1];
            for (std::int64_t k = 0; k < nin; ++k) {
                double* __restrict ndk = nd + k * kBlock;
                const double w0 = W[k];
#pragma omp simd
                for (std::int64_t e = 0; e < kBlock; ++e) ndk[e] = w0 * delta[e];
                for (std::int64_t j = 1; j < nout; ++j) {
                    const double wj = W[j * nin + k];
                    const double* __restrict dj = delta + j * kBlock;
#pragma omp simd
                    for (std::int64_t e = 0; e < kBlock; ++e) ndk[e] += wj * dj[e];
                }
                const double* __restrict dvk = dv + k * kBlock;
#pragma omp simd
                for (std::int64_t e = 0; e < kBlock; ++e) ndk[e] *= dvk[e];
            }
            delta = nd;
        }
    }
}

// One group of events for a list of networks: out[i * (P + 1) + ...] receives network i's
// gradient (P entries, when kGrad) and loss (last entry).
template <bool kRef, bool kGrad>
FASTNPLM_INLINE void group_pass_impl(const Layout& L, MatrixView x, std::int64_t r0, std::int64_t r1, const double* w,
                                     const double* params, const std::int64_t* nets, std::int64_t n_nets, double* out,
                                     std::int64_t out_stride, Scratch& s) {
    const std::int64_t nb = transpose_events(x, r0, r1, s.xs.data());
    const std::int64_t P = L.n_params;
    for (std::int64_t i = 0; i < n_nets; ++i) {
        std::fill(s.lacc.begin(), s.lacc.end(), 0.0);
        if (kGrad) std::fill(s.gacc.begin(), s.gacc.end(), 0.0);
        run_blocks<kRef, kGrad>(L, params + nets[i] * P, s.xs.data(), nb, r1 - r0, kRef ? w + r0 : nullptr, s);
        double* o = out + i * out_stride;
        if (kGrad)
            for (std::int64_t j = 0; j < P; ++j) {
                double acc = 0.0;
                for (std::int64_t e = 0; e < kBlock; ++e) acc += s.gacc[j * kBlock + e];
                o[j] = acc;
            }
        double acc = 0.0;
        for (std::int64_t e = 0; e < kBlock; ++e) acc += s.lacc[e];
        o[P] = acc;
    }
}

FASTNPLM_HOT void group_pass(const Layout& L, MatrixView x, std::int64_t r0, std::int64_t r1, const double* w,
                             bool grad, const double* params, const std::int64_t* nets, std::int64_t n_nets,
                             double* out, std::int64_t out_stride, Scratch& s) {
    if (w != nullptr) {
        if (grad) group_pass_impl<true, true>(L, x, r0, r1, w, params, nets, n_nets, out, out_stride, s);
        else group_pass_impl<true, false>(L, x, r0, r1, w, params, nets, n_nets, out, out_stride, s);
    } else {
        if (grad) group_pass_impl<false, true>(L, x, r0, r1, w, params, nets, n_nets, out, out_stride, s);
        else group_pass_impl<false, false>(L, x, r0, r1, w, params, nets, n_nets, out, out_stride, s);
    }
}

FASTNPLM_HOT void predict_blocks(const Layout& L, const double* params, MatrixView x, std::int64_t r0,
                                 std::int64_t r1, double* out, Scratch& s) {
    const std::int64_t nb = transpose_events(x, r0, r1, s.xs.data());
    for (std::int64_t ib = 0; ib < nb; ++ib) {
        forward_block<false>(L, params, s.xs.data() + ib * L.d * kBlock, s.act.data(), s.der.data(), s.f.data());
        const std::int64_t len = std::min(kBlock, r1 - r0 - ib * kBlock);
        std::copy(s.f.begin(), s.f.begin() + len, out + r0 + ib * kBlock);
    }
}

void check_events(MatrixView x, std::int64_t d, const std::string& name) {
    if (x.rows < 1) throw std::invalid_argument("mlp: " + name + " is empty (0 events)");
    if (x.cols != d)
        throw std::invalid_argument("mlp: " + name + " has " + std::to_string(x.cols) +
                                    " features but the network takes " + std::to_string(d));
    if (x.data == nullptr) throw std::invalid_argument("mlp: " + name + " has no data pointer");
}

}  // namespace

std::int64_t MlpShape::n_params() const {
    validate();
    std::int64_t nin = d, p = 0;
    for (std::int64_t h : hidden) {
        p += (nin + 1) * h;
        nin = h;
    }
    return p + nin + 1;
}

void MlpShape::validate() const {
    if (d < 1) throw std::invalid_argument("mlp: the input dimension must be >= 1, got " + std::to_string(d));
    if (hidden.empty()) throw std::invalid_argument("mlp: hidden widths are empty; need at least one hidden layer");
    for (std::int64_t h : hidden)
        if (h < 1) throw std::invalid_argument("mlp: hidden widths must be >= 1, got " + std::to_string(h));
}

void mlp_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   int threads) {
    const Layout L = make_layout(shape);
    check_events(reference, L.d, "reference");
    if (reference_weights == nullptr) throw std::invalid_argument("mlp: reference weights are missing");
    if (data.empty()) throw std::invalid_argument("mlp: no networks (data list is empty)");
    for (std::size_t b = 0; b < data.size(); ++b) check_events(data[b], L.d, "data set " + std::to_string(b));
    const std::int64_t B = static_cast<std::int64_t>(data.size()), P = L.n_params, W = P + 1;
    const bool want_grad = grad != nullptr;

    // Tasks: reference groups (all networks each), then (network, data group) pairs.
    const std::int64_t gr = n_groups(reference.rows);
    std::vector<std::int64_t> data_first(B + 1, 0), data_groups(B);
    std::int64_t max_group = (reference.rows + gr - 1) / gr;
    for (std::int64_t b = 0; b < B; ++b) {
        data_groups[b] = n_groups(data[b].rows);
        data_first[b + 1] = data_first[b] + data_groups[b];
        max_group = std::max(max_group, (data[b].rows + data_groups[b] - 1) / data_groups[b]);
    }
    const std::int64_t n_tasks = gr + data_first[B];
    std::vector<double> ref_part(static_cast<size_t>(gr * B * W)), data_part(static_cast<size_t>(data_first[B] * W));
    std::vector<std::int64_t> all(B);
    for (std::int64_t b = 0; b < B; ++b) all[b] = b;
    const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if (n_tasks > 1 && nt > 1)
    {
        Scratch s(L, max_group);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t t = 0; t < n_tasks; ++t) {
            if (t < gr) {
                const std::int64_t n = reference.rows;
                group_pass(L, reference, n * t / gr, n * (t + 1) / gr, reference_weights, want_grad, params,
                           all.data(), B, ref_part.data() + t * B * W, W, s);
            } else {
                const std::int64_t u = t - gr;
                const std::int64_t b = std::upper_bound(data_first.begin(), data_first.end(), u) - data_first.begin() - 1;
                const std::int64_t g = u - data_first[b], G = data_groups[b], n = data[b].rows;
                group_pass(L, data[b], n * g / G, n * (g + 1) / G, nullptr, want_grad, params, &b, 1,
                           data_part.data() + u * W, W, s);
            }
        }
    }
    for (std::int64_t b = 0; b < B; ++b) {
        double lr = 0.0, ld = 0.0;
        for (std::int64_t g = 0; g < gr; ++g) lr += ref_part[(g * B + b) * W + P];
        for (std::int64_t g = data_first[b]; g < data_first[b + 1]; ++g) ld += data_part[g * W + P];
        loss[b] = lr + ld;
        if (!want_grad) continue;
        double* gb = grad + b * P;
        for (std::int64_t j = 0; j < P; ++j) {
            double sr = 0.0, sd = 0.0;
            for (std::int64_t g = 0; g < gr; ++g) sr += ref_part[(g * B + b) * W + j];
            for (std::int64_t g = data_first[b]; g < data_first[b + 1]; ++g) sd += data_part[g * W + j];
            gb[j] = sr + sd;
        }
    }
}

void mlp_predict(const MlpShape& shape, const double* params, MatrixView x, double* out, int threads) {
    const Layout L = make_layout(shape);
    if (x.rows == 0) return;
    check_events(x, L.d, "x");
    constexpr std::int64_t chunk = 1024;
    const std::int64_t nchunks = (x.rows + chunk - 1) / chunk;
    const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if (nchunks > 1 && nt > 1)
    {
        Scratch s(L, chunk);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t c = 0; c < nchunks; ++c)
            predict_blocks(L, params, x, c * chunk, std::min(x.rows, (c + 1) * chunk), out, s);
    }
}

}  // namespace fastnplm
