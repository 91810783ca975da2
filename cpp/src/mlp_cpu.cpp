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
#include "hot.hpp"
#include "mlp_pass.hpp"
#include "vexp.hpp"

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

// Per-thread buffers.
struct Scratch {
    std::vector<double> act, der, pre, da, db, gacc, lacc, f, q;
    explicit Scratch(const Layout& L)
        : act(L.hidden_total * kBlock),
          der(L.hidden_total * kBlock),
          pre(L.max_width * kBlock),
          da(L.max_width * kBlock),
          db(L.max_width * kBlock),
          gacc(L.n_params * kBlock),
          lacc(kBlock),
          f(kBlock),
          q(kBlock) {}
};

// Events transposed into blocks of kBlock (block i at xs + i * d * kBlock, feature k of
// slot e at [k * kBlock + e]) with a weight per slot; padding slots are zero with weight 0.
struct EventBlocks {
    std::vector<double> xs, w;
    std::int64_t n = 0, nb = 0;
    EventBlocks(MatrixView x, const double* weights) : n(x.rows), nb((x.rows + kBlock - 1) / kBlock) {
        const std::int64_t d = x.cols;
        xs.assign(static_cast<size_t>(nb * d * kBlock), 0.0);
        w.assign(static_cast<size_t>(nb * kBlock), 0.0);
        for (std::int64_t i = 0; i < n; ++i) {
            const double* row = x.row(i);
            double* blk = xs.data() + (i / kBlock) * d * kBlock + i % kBlock;
            for (std::int64_t k = 0; k < d; ++k) blk[k * kBlock] = row[k];
            w[i] = weights != nullptr ? weights[i] : 1.0;
        }
    }
};

// A fixed partition of nb blocks into groups (a function of nb only): group g is
// [nb * g / G, nb * (g + 1) / G).
std::int64_t n_groups(std::int64_t nb) {
    return std::max<std::int64_t>(1, std::min(kMaxGroups, (nb * kBlock + kGroupEvents - 1) / kGroupEvents));
}

// Forward pass of one block: hidden activations act (and sigmoid derivatives der when
// wanted), output f; pre is a (max_width x kBlock) scratch.
//
// sigmoid(z) from e = exp(-|z|) <= 1: with u = 1 + e in (1, 2], sigmoid = 1/u for z >= 0 and
// e/u below, sigmoid' = e/u^2, all without cancellation. The reciprocals of a layer's n units
// come from one division: R = 1/(u_1 ... u_n) (at most 2^n, no overflow for n < 1000), then
// 1/u_j = R * (u_1 ... u_{j-1}) * (u_{j+1} ... u_n) by prefix and suffix products -- a few
// ulps instead of n divisions, which dominate the pass otherwise (the divider is slow).
template <bool kDer>
FASTNPLM_INLINE inline void forward_block(const Layout& L, const double* __restrict p, const double* __restrict xs,
                                   double* __restrict act, double* __restrict der, double* __restrict pre,
                                   double* __restrict f) {
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
        }
        if (last) break;
        double* __restrict ex = der + L.act_off[l];  // holds e = exp(-|z|) until overwritten by sigmoid'
        for (std::int64_t j = 0; j < nout; ++j) {
            const double* __restrict z = out + j * kBlock;
            double* __restrict exj = ex + j * kBlock;
            double* __restrict pj = pre + j * kBlock;
            const double* __restrict pp = pre + (j - 1) * kBlock;
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                const double x = detail::vexp(-std::fabs(z[e]));
                exj[e] = x;
                pj[e] = j == 0 ? 1.0 + x : pp[e] * (1.0 + x);
            }
        }
        double rinv[kBlock], suf[kBlock];
        const double* __restrict plast = pre + (nout - 1) * kBlock;
#pragma omp simd
        for (std::int64_t e = 0; e < kBlock; ++e) {
            rinv[e] = 1.0 / plast[e];
            suf[e] = 1.0;
        }
        for (std::int64_t j = nout - 1; j >= 0; --j) {
            double* __restrict z = out + j * kBlock;
            double* __restrict exj = ex + j * kBlock;
            const double* __restrict pp = pre + (j - 1) * kBlock;
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                const double x = exj[e];
                const double r = (j == 0 ? rinv[e] : rinv[e] * pp[e]) * suf[e];
                suf[e] *= 1.0 + x;
                z[e] = z[e] >= 0.0 ? r : x * r;
                if (kDer) exj[e] = x * r * r;
            }
        }
        in = out;
    }
}

// Loss and lane-wise gradient of one network over nb blocks of transposed events xs with
// slot weights wt (reference weights, or 1 for data events; 0 on padding). Adds to s.gacc, s.lacc.
template <bool kRef, bool kGrad>
FASTNPLM_INLINE inline void run_blocks(const Layout& L, const double* __restrict p, const double* xs, std::int64_t nb,
                                const double* wt, Scratch& s) {
    double* __restrict f = s.f.data();
    double* __restrict q = s.q.data();
    double* __restrict lacc = s.lacc.data();
    double* __restrict gacc = s.gacc.data();
    for (std::int64_t ib = 0; ib < nb; ++ib) {
        const double* xb = xs + ib * L.d * kBlock;
        forward_block<kGrad>(L, p, xb, s.act.data(), s.der.data(), s.pre.data(), f);
        const double* __restrict wb = wt + ib * kBlock;
        if (kRef) {
            // q = dL/df = w e^f; loss term w (e^f - 1). Padding slots carry w = 0.
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                const double ef = detail::vexp(f[e]);
                q[e] = wb[e] * ef;
                lacc[e] += wb[e] * (ef - 1.0);
            }
        } else {
            // data: q = -1, loss term -f; wb is 1 on events, 0 on padding slots.
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                q[e] = -wb[e];
                lacc[e] -= wb[e] * f[e];
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

// Blocks [b0, b1) of an event set for a list of networks: out[i * out_stride + ...] receives
// network nets[i]'s gradient (P entries, when kGrad) and loss (entry P).
template <bool kRef, bool kGrad>
FASTNPLM_INLINE inline void group_pass_impl(const Layout& L, const EventBlocks& ev, std::int64_t b0, std::int64_t b1,
                                     const double* params, const std::int64_t* nets, std::int64_t n_nets, double* out,
                                     std::int64_t out_stride, Scratch& s) {
    const std::int64_t P = L.n_params;
    const double* xs = ev.xs.data() + b0 * L.d * kBlock;
    const double* wt = ev.w.data() + b0 * kBlock;
    for (std::int64_t i = 0; i < n_nets; ++i) {
        std::fill(s.lacc.begin(), s.lacc.end(), 0.0);
        if (kGrad) std::fill(s.gacc.begin(), s.gacc.end(), 0.0);
        run_blocks<kRef, kGrad>(L, params + nets[i] * P, xs, b1 - b0, wt, s);
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

FASTNPLM_HOT void group_pass(const Layout& L, const EventBlocks& ev, std::int64_t b0, std::int64_t b1, bool ref,
                             bool grad, const double* params, const std::int64_t* nets, std::int64_t n_nets,
                             double* out, std::int64_t out_stride, Scratch& s) {
    if (ref) {
        if (grad) group_pass_impl<true, true>(L, ev, b0, b1, params, nets, n_nets, out, out_stride, s);
        else group_pass_impl<true, false>(L, ev, b0, b1, params, nets, n_nets, out, out_stride, s);
    } else {
        if (grad) group_pass_impl<false, true>(L, ev, b0, b1, params, nets, n_nets, out, out_stride, s);
        else group_pass_impl<false, false>(L, ev, b0, b1, params, nets, n_nets, out, out_stride, s);
    }
}

FASTNPLM_HOT void predict_blocks(const Layout& L, const double* params, const EventBlocks& ev, std::int64_t b0,
                                 std::int64_t b1, double* out, Scratch& s) {
    for (std::int64_t ib = b0; ib < b1; ++ib) {
        forward_block<false>(L, params, ev.xs.data() + ib * L.d * kBlock, s.act.data(), s.der.data(), s.pre.data(),
                             s.f.data());
        const std::int64_t len = std::min(kBlock, ev.n - ib * kBlock);
        std::copy(s.f.begin(), s.f.begin() + len, out + ib * kBlock);
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

namespace detail {

struct MlpPass::Impl {
    Layout L;
    EventBlocks ref;
    std::vector<EventBlocks> data;
    std::int64_t ref_groups;
    std::vector<std::int64_t> data_groups;
    int threads;
    Impl(const MlpShape& shape, MatrixView reference, const double* w, const std::vector<MatrixView>& d, int t)
        : L(make_layout(shape)), ref(checked(reference, L.d, "reference", w), w), ref_groups(n_groups(ref.nb)),
          threads(resolve_threads(t)) {
        if (d.empty()) throw std::invalid_argument("mlp: no networks (data list is empty)");
        data.reserve(d.size());
        for (std::size_t b = 0; b < d.size(); ++b) {
            data.emplace_back(checked(d[b], L.d, "data set " + std::to_string(b), nullptr), nullptr);
            data_groups.push_back(n_groups(data.back().nb));
        }
    }
    static MatrixView checked(MatrixView x, std::int64_t d, const std::string& name, const double* w) {
        check_events(x, d, name);
        if (name == "reference" && w == nullptr) throw std::invalid_argument("mlp: reference weights are missing");
        return x;
    }
};

MlpPass::MlpPass(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                 const std::vector<MatrixView>& data, int threads)
    : impl_(std::make_unique<Impl>(shape, reference, reference_weights, data, threads)) {}
MlpPass::~MlpPass() = default;

std::int64_t MlpPass::n_networks() const { return static_cast<std::int64_t>(impl_->data.size()); }
std::int64_t MlpPass::n_params() const { return impl_->L.n_params; }

void MlpPass::run(const double* params, const std::int64_t* nets, std::int64_t n_nets, double* loss,
                  double* grad) const {
    const Impl& m = *impl_;
    const Layout& L = m.L;
    const std::int64_t P = L.n_params, W = P + 1, gr = m.ref_groups;
    const bool want_grad = grad != nullptr;
    // Tasks: reference groups (every listed network each), then (network, data group) pairs.
    std::vector<std::int64_t> first(n_nets + 1, 0);
    for (std::int64_t i = 0; i < n_nets; ++i) first[i + 1] = first[i] + m.data_groups[nets[i]];
    const std::int64_t n_tasks = gr + first[n_nets];
    std::vector<double> ref_part(static_cast<size_t>(gr * n_nets * W)), data_part(static_cast<size_t>(first[n_nets] * W));
#pragma omp parallel num_threads(m.threads) if (n_tasks > 1 && m.threads > 1)
    {
        Scratch s(L);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t t = 0; t < n_tasks; ++t) {
            if (t < gr) {
                const std::int64_t nb = m.ref.nb;
                group_pass(L, m.ref, nb * t / gr, nb * (t + 1) / gr, true, want_grad, params, nets, n_nets,
                           ref_part.data() + t * n_nets * W, W, s);
            } else {
                const std::int64_t u = t - gr;
                const std::int64_t i = std::upper_bound(first.begin(), first.end(), u) - first.begin() - 1;
                const EventBlocks& ev = m.data[nets[i]];
                const std::int64_t g = u - first[i], G = first[i + 1] - first[i], nb = ev.nb;
                group_pass(L, ev, nb * g / G, nb * (g + 1) / G, false, want_grad, params, nets + i, 1,
                           data_part.data() + u * W, W, s);
            }
        }
    }
    for (std::int64_t i = 0; i < n_nets; ++i) {
        const std::int64_t b = nets[i];
        double lr = 0.0, ld = 0.0;
        for (std::int64_t g = 0; g < gr; ++g) lr += ref_part[(g * n_nets + i) * W + P];
        for (std::int64_t g = first[i]; g < first[i + 1]; ++g) ld += data_part[g * W + P];
        loss[b] = lr + ld;
        if (!want_grad) continue;
        double* gb = grad + b * P;
        for (std::int64_t j = 0; j < P; ++j) {
            double sr = 0.0, sd = 0.0;
            for (std::int64_t g = 0; g < gr; ++g) sr += ref_part[(g * n_nets + i) * W + j];
            for (std::int64_t g = first[i]; g < first[i + 1]; ++g) sd += data_part[g * W + j];
            gb[j] = sr + sd;
        }
    }
}

}  // namespace detail

void mlp_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   int threads) {
    const detail::MlpPass pass(shape, reference, reference_weights, data, threads);
    std::vector<std::int64_t> all(data.size());
    for (std::size_t b = 0; b < all.size(); ++b) all[b] = static_cast<std::int64_t>(b);
    pass.run(params, all.data(), static_cast<std::int64_t>(all.size()), loss, grad);
}

void mlp_predict(const MlpShape& shape, const double* params, MatrixView x, double* out, int threads) {
    const Layout L = make_layout(shape);
    if (x.rows == 0) return;
    check_events(x, L.d, "x");
    const EventBlocks ev(x, nullptr);
    constexpr std::int64_t chunk = 32;  // blocks per task
    const std::int64_t nchunks = (ev.nb + chunk - 1) / chunk;
    const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if (nchunks > 1 && nt > 1)
    {
        Scratch s(L);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t c = 0; c < nchunks; ++c)
            predict_blocks(L, params, ev, c * chunk, std::min(ev.nb, (c + 1) * chunk), out, s);
    }
}

}  // namespace fastnplm
