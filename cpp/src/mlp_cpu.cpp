// CPU backend of the MLP primitives: loss + gradient of B networks (fused forward and
// backward pass), and the forward pass alone.
//
// Layout: events go through the network in blocks of kBlock, stored transposed
// (xs[k * kBlock + e] = feature k of event e of the block), so that every loop below runs
// over the events of a block with unit stride and vectorises; the activations, sigmoid
// derivatives and back-propagated deltas of a block live in small per-thread buffers (L1).
// Loss sums are kept lane-wise in double (one accumulator per event slot of a block, lacc[e])
// across the blocks of a group. Gradient sums: with SIMD, a block's terms of a parameter are
// summed in a register over its kBlock / N vectors (N lanes: kBlock / N events per lane) and
// added to N double lanes, gacc[p * N + lane]; the products of a layer (pre-activations,
// back-propagated deltas) likewise accumulate in registers (block_affine). Each group's lane
// sums are reduced in a fixed order at its end.
//
// Networks with one hidden layer (d-h-1, the 1D toy's 1-4-1) take run_blocks_1h instead: the
// same blocks and groups, swept a chunk of blocks at a time in SIMD vectors (simd.hpp), three
// loops of independent iterations (exps; sigmoids and the output; gradient), the block's
// gradient terms summed per parameter in a register and added to double lanes once per block.
//
// Precision T: double, or float in the float32 mode (MlpPrecision): features, activations,
// exps and per-event terms in float (8 lanes per AVX2 vector instead of 4); every gradient sum
// beyond a block's lane (kBlock / 8 = 4 events) and every loss sum beyond one event is double,
// as are parameters and the optimiser. On CPUs with AVX-512 the float32 pass of one-hidden-layer
// networks runs its per-event work in 16-lane vectors (group_pass_x16) and its sums in the
// 8-lane order: the same bits as 8 lanes.
//
// The reference is cut into groups (a function of N_R only). A task takes one group,
// transposes its events once and runs every network over them (the group stays in L2), so
// the reference is read from memory once per pass for all B networks. Each network's data
// is cut into groups by its own size. Partials (per group, per network) are summed in group
// order: any thread count, and any batch a network shares the call with, gives the same bits.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastnplm/kernel_ops.hpp"  // resolve_threads
#include "fastnplm/mlp.hpp"
#include "hot.hpp"
#include "backends.hpp"
#include "mlp_pass.hpp"
#include "simd.hpp"
#include "vexp.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // SIMD vectors cross only always-inline boundaries
#endif

namespace fastnplm {
namespace {

constexpr std::int64_t kBlock = 32;          // events per block (SIMD loops run over these)
constexpr std::int64_t kGroupEvents = 2048;  // target events per group
constexpr std::int64_t kMaxGroups = 64;
constexpr std::int64_t kMaxHidden1 = 32;  // widest hidden layer the one-hidden-layer path takes
constexpr std::int64_t kChunkBlocks = 4;  // blocks per chunk of the one-hidden-layer path

struct Layout {
    std::int64_t d = 0, layers = 0, n_params = 0, hidden_total = 0, max_width = 0;
    std::vector<std::int64_t> in, out, w_off, b_off, act_off;  // per layer
    bool one_hidden = false;                                   // d-h-1 with h <= kMaxHidden1: run_blocks_1h runs
};

Layout make_layout(const MlpShape& s, bool specialise = true) {
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
#ifdef FASTNPLM_HAVE_SIMD
    L.one_hidden = specialise && L.layers == 2 && s.hidden[0] <= kMaxHidden1;
#else
    (void)specialise;
#endif
    return L;
}

// Per-thread buffers. T: the type of activations (double, or float in the float32 mode);
// gradient and loss accumulators are double either way.
template <class T>
struct Scratch {
    std::vector<T> act, der, pre, da, db, f, q, pt, chunk;
    std::vector<double> gacc, lacc;
    explicit Scratch(const Layout& L)
        : act(L.hidden_total * kBlock),
          der(L.hidden_total * kBlock),
          pre(L.max_width * kBlock),
          da(L.max_width * kBlock),
          db(L.max_width * kBlock),
          f(kBlock),
          q(kBlock),
          pt(L.n_params),
          gacc((L.n_params + 1) * kBlock),
          lacc(kBlock),
          chunk(L.one_hidden ? (2 * L.out[0] + 1) * kChunkBlocks * kBlock : 0) {}
};

// Events transposed into blocks of kBlock (block i at xs + i * d * kBlock, feature k of
// slot e at [k * kBlock + e]) with a weight per slot; padding slots are zero with weight 0.
// The features and wt are in T (rounded once here in the float32 mode); w keeps the weights
// in double for the loss sums.
template <class T>
struct EventBlocks {
    std::vector<T> xs, wt;
    std::vector<double> w;
    std::int64_t n = 0, nb = 0;
    EventBlocks(MatrixView x, const double* weights) : n(x.rows), nb((x.rows + kBlock - 1) / kBlock) {
        const std::int64_t d = x.cols;
        xs.assign(static_cast<size_t>(nb * d * kBlock), T(0));
        w.assign(static_cast<size_t>(nb * kBlock), 0.0);
        wt.assign(static_cast<size_t>(nb * kBlock), T(0));
        for (std::int64_t i = 0; i < n; ++i) {
            const double* row = x.row(i);
            T* blk = xs.data() + (i / kBlock) * d * kBlock + i % kBlock;
            for (std::int64_t k = 0; k < d; ++k) blk[k * kBlock] = static_cast<T>(row[k]);
            w[i] = weights != nullptr ? weights[i] : 1.0;
            wt[i] = static_cast<T>(w[i]);
        }
    }
};

// A fixed partition of nb blocks into groups (a function of nb only): group g is
// [nb * g / G, nb * (g + 1) / G).
std::int64_t n_groups(std::int64_t nb) {
    return std::max<std::int64_t>(1, std::min(kMaxGroups, (nb * kBlock + kGroupEvents - 1) / kGroupEvents));
}

// out[e] = (b + sum_{k < n} W[k * ws] in[k * kBlock + e]) * (scale ? scale[e] : 1) for the
// kBlock events of a block: a layer's pre-activation of one unit (W a row, ws = 1) or, in the
// backward pass, a unit's back-propagated delta (W a column, ws = the row length, scale the
// sigmoid'). With SIMD the block's kBlock / N vectors accumulate in registers across k.
template <class T, int kN = detail::Simd<T>::N>
FASTNPLM_INLINE inline void block_affine(const T* __restrict W, std::int64_t ws, std::int64_t n, T b,
                                         const T* __restrict in, const T* __restrict scale, T* __restrict out) {
#ifdef FASTNPLM_HAVE_SIMD
    using V = typename detail::Simd<T, kN>::V;
    constexpr std::int64_t N = kN, kU = kBlock / N;
    V acc[kU];
    for (std::int64_t u = 0; u < kU; ++u) acc[u] = detail::splat<V>(b);
    for (std::int64_t k = 0; k < n; ++k) {
        const T wk = W[k * ws];
        for (std::int64_t u = 0; u < kU; ++u) acc[u] += wk * detail::load<V>(in + k * kBlock + u * N);
    }
    for (std::int64_t u = 0; u < kU; ++u)
        detail::store(out + u * N, scale != nullptr ? acc[u] * detail::load<V>(scale + u * N) : acc[u]);
#else
    for (std::int64_t e = 0; e < kBlock; ++e) out[e] = b;
    for (std::int64_t k = 0; k < n; ++k) {
        const T wk = W[k * ws];
        for (std::int64_t e = 0; e < kBlock; ++e) out[e] += wk * in[k * kBlock + e];
    }
    if (scale != nullptr)
        for (std::int64_t e = 0; e < kBlock; ++e) out[e] *= scale[e];
#endif
}

// Forward pass of one block: hidden activations act (and sigmoid derivatives der when
// wanted), output f; pre is a (max_width x kBlock) scratch.
//
// sigmoid(z) from e = exp(-|z|) <= 1: with u = 1 + e in (1, 2], sigmoid = 1/u for z >= 0 and
// e/u below, sigmoid' = e/u^2, all without cancellation. The reciprocals of a layer's n units
// come from one division: R = 1/(u_1 ... u_n) (at most 2^n, no overflow for n < 128), then
// 1/u_j = R * (u_1 ... u_{j-1}) * (u_{j+1} ... u_n) by prefix and suffix products -- a few
// ulps instead of n divisions, which dominate the pass otherwise (the divider is slow).
template <class T, bool kDer, int kN = detail::Simd<T>::N>
FASTNPLM_INLINE inline void forward_block(const Layout& L, const T* __restrict p, const T* __restrict xs,
                                          T* __restrict act, T* __restrict der, T* __restrict pre, T* __restrict f) {
    const T* in = xs;
    for (std::int64_t l = 0; l < L.layers; ++l) {
        const std::int64_t nin = L.in[l], nout = L.out[l];
        const T* __restrict W = p + L.w_off[l];
        const T* __restrict b = p + L.b_off[l];
        const bool last = l + 1 == L.layers;
        T* __restrict out = last ? f : act + L.act_off[l];
        for (std::int64_t j = 0; j < nout; ++j)
            block_affine<T, kN>(W + j * nin, 1, nin, b[j], in, nullptr, out + j * kBlock);
        if (last) break;
        T* __restrict ex = der + L.act_off[l];  // holds e = exp(-|z|) until overwritten by sigmoid'
        for (std::int64_t j = 0; j < nout; ++j) {
            const T* __restrict z = out + j * kBlock;
            T* __restrict exj = ex + j * kBlock;
            T* __restrict pj = pre + j * kBlock;
            const T* __restrict pp = pre + (j - 1) * kBlock;
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                T x;
                if constexpr (std::is_same_v<T, float>)
                    x = detail::vexp<detail::ExpClamp::low>(-std::fabs(z[e]));
                else
                    x = detail::vexp(-std::fabs(z[e]));
                exj[e] = x;
                pj[e] = j == 0 ? T(1) + x : pp[e] * (T(1) + x);
            }
        }
        // rs = 1 / (u_j ... u_n) going down, so 1/u_j = rs * (u_1 ... u_{j-1})
        T rs[kBlock];
        const T* __restrict plast = pre + (nout - 1) * kBlock;
#pragma omp simd
        for (std::int64_t e = 0; e < kBlock; ++e) rs[e] = T(1) / plast[e];
        for (std::int64_t j = nout - 1; j >= 0; --j) {
            T* __restrict z = out + j * kBlock;
            T* __restrict exj = ex + j * kBlock;
            const T* __restrict pp = pre + (j - 1) * kBlock;
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                const T x = exj[e];
                const T r = j == 0 ? rs[e] : rs[e] * pp[e];
                rs[e] *= T(1) + x;
                const T xr = x * r;
                z[e] = z[e] >= T(0) ? r : xr;
                if (kDer) exj[e] = xr * r;
            }
        }
        in = out;
    }
}

// e^f for the loss: double as is; float saturates at f = 88 (vexp's clamp), so anything
// beyond is made inf here -- a float32 fit that overflows stops as non-finite, as in double.
FASTNPLM_INLINE inline double exp_f(double f) { return detail::vexp(f); }
FASTNPLM_INLINE inline float exp_f(float f) {
    return f > 88.0f ? std::numeric_limits<float>::infinity() : detail::vexp<detail::ExpClamp::low>(f);
}

// Gradient sums of the general pass: gacc[p * kGradLanes + lane] (double). With SIMD, a
// block's terms of a parameter are summed over its kBlock / N vectors in a register (in T: at
// most kBlock / N events per lane, as in run_blocks_1h) and widened once into N double lanes;
// without, every event slot of a block has its own double lane.
#ifdef FASTNPLM_HAVE_SIMD
template <class T>
constexpr std::int64_t kGradLanes = detail::Simd<T>::N;

// acc[0 .. N) += the block's sum of a[e] * b[e] (b == nullptr: of a[e]), lane-wise.
template <class T>
FASTNPLM_INLINE inline void block_dot_acc(const T* __restrict a, const T* __restrict b, double* __restrict acc) {
    using V = typename detail::Simd<T>::V;
    constexpr std::int64_t N = detail::Simd<T>::N;
    V s = b != nullptr ? detail::load<V>(a) * detail::load<V>(b) : detail::load<V>(a);
    for (std::int64_t u = N; u < kBlock; u += N)
        s += b != nullptr ? detail::load<V>(a + u) * detail::load<V>(b + u) : detail::load<V>(a + u);
    detail::acc_add<T>(acc, detail::Wide<T>::of(s));
}
#else
template <class T>
constexpr std::int64_t kGradLanes = kBlock;

template <class T>
inline void block_dot_acc(const T* __restrict a, const T* __restrict b, double* __restrict acc) {
    // float32 mode: the product of two floats is exact in double
    for (std::int64_t e = 0; e < kBlock; ++e)
        acc[e] += static_cast<double>(a[e]) * (b != nullptr ? static_cast<double>(b[e]) : 1.0);
}
#endif

template <class T>
FASTNPLM_INLINE inline void block_sum_acc(const T* __restrict a, double* __restrict acc) {
    block_dot_acc<T>(a, nullptr, acc);
}

// Loss and lane-wise gradient of one network (params pt, in T) over nb blocks of transposed
// events xs with slot weights wt / w (reference weights, or 1 for data events; 0 on padding).
// Adds to s.gacc, s.lacc (double). kN: the lanes of the per-event products (block_affine); the
// gradient sums take Simd<T>'s lanes whatever kN is, so that they add in the same order.
template <class T, int kN, bool kRef, bool kGrad, bool kLoss>
FASTNPLM_INLINE inline void run_blocks(const Layout& L, const T* __restrict p, const T* xs, std::int64_t nb,
                                       const T* wt, const double* w, Scratch<T>& s) {
    T* __restrict f = s.f.data();
    T* __restrict q = s.q.data();
    double* __restrict lacc = s.lacc.data();
    double* __restrict gacc = s.gacc.data();
    for (std::int64_t ib = 0; ib < nb; ++ib) {
        const T* xb = xs + ib * L.d * kBlock;
        forward_block<T, kGrad, kN>(L, p, xb, s.act.data(), s.der.data(), s.pre.data(), f);
        const T* __restrict wb = wt + ib * kBlock;
        const double* __restrict wd = w + ib * kBlock;
        if (kRef) {
            // q = dL/df = w e^f; loss term w (e^f - 1). Padding slots carry w = 0.
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                const T ef = exp_f(f[e]);
                q[e] = wb[e] * ef;
                if (kLoss) lacc[e] += wd[e] * (static_cast<double>(ef) - 1.0);
            }
        } else {
            // data: q = -1, loss term -f; w is 1 on events, 0 on padding slots.
#pragma omp simd
            for (std::int64_t e = 0; e < kBlock; ++e) {
                q[e] = -wb[e];
                if (kLoss) lacc[e] -= wd[e] * static_cast<double>(f[e]);
            }
        }
        if (!kGrad) continue;
        // Backward: delta of layer l (out_l x kBlock), starting from the output's q.
        const T* delta = q;
        for (std::int64_t l = L.layers - 1; l >= 0; --l) {
            const std::int64_t nin = L.in[l], nout = L.out[l];
            const T* in = l == 0 ? xb : s.act.data() + L.act_off[l - 1];
            for (std::int64_t j = 0; j < nout; ++j) {
                const T* __restrict dj = delta + j * kBlock;
                block_sum_acc(dj, gacc + (L.b_off[l] + j) * kGradLanes<T>);
                for (std::int64_t k = 0; k < nin; ++k)
                    block_dot_acc(dj, in + k * kBlock, gacc + (L.w_off[l] + j * nin + k) * kGradLanes<T>);
            }
            if (l == 0) break;
            // delta_{l-1}[k] = (sum_j W[j, k] delta_l[j]) * sigmoid'(z_{l-1}[k])
            const T* __restrict W = p + L.w_off[l];
            T* __restrict nd = delta == s.da.data() ? s.db.data() : s.da.data();
            const T* __restrict dv = s.der.data() + L.act_off[l - 1];
            for (std::int64_t k = 0; k < nin; ++k)
                block_affine<T, kN>(W + k, nin, nout, T(0), delta, dv + k * kBlock, nd + k * kBlock);
            delta = nd;
        }
    }
}

#ifdef FASTNPLM_HAVE_SIMD
// The d-h-1 network (one hidden layer, h <= kMaxHidden1) in three sweeps over a chunk of up to
// kChunkBlocks blocks, each a loop whose iterations (one vector of N events) are independent,
// so the out-of-order core overlaps several of them: (1) z_j and e_j = exp(-|z_j|) of every
// hidden unit into buf; (2) the sigmoids (one division per vector, prefix/suffix products),
// sigmoid', f, e^f and q; (3) the gradient, a block (kU vectors) at a time: the terms of each
// parameter summed in a register (kU events per lane) and widened once into double lanes of
// acc (loss at j = P; the caller reduces the lanes). The factor v_j of the
// first layer's gradient is left out here (acc holds sum q sigmoid'_j x and sum q sigmoid'_j)
// and applied by the caller, in double, once per group. buf: (2 h + 1) * kChunkBlocks * kBlock.
//
// kN = 16 (float, AVX-512: FASTNPLM_V4 functions only) runs (1) and (2) in 16-lane vectors and
// gives the same bits as 8 lanes: their work is per event, and a 16-lane vector of (2) holds the
// two 8-lane vectors that (2) would take one after the other, whose loss terms fold into the
// same double lanes in that order (Wide<float, 16>). (3) keeps Simd<T>'s lanes: its sums are
// kU events per lane in a fixed order, and 16 lanes from two blocks (vectors joined from
// two loads) measured no faster than 8 on Zen 4.
template <class T, int kN, bool kRef, bool kGrad, bool kLoss, int kD = 0, int kH = 0>
FASTNPLM_INLINE inline void run_blocks_1h(const Layout& L, const T* __restrict p, const T* __restrict xs,
                                          std::int64_t nb, const T* __restrict wt, const double* __restrict w,
                                          double* __restrict acc, T* __restrict buf) {
    using detail::Wide;
    using V = typename detail::Simd<T, kN>::V;  // of (1) and (2)
    using Wd = Wide<T, kN>;
    using V8 = typename detail::Simd<T>::V;  // of (3)
    using W8 = Wide<T>;
    constexpr int N = kN, N8 = detail::Simd<T>::N;
    constexpr int kU = kBlock / N, kU8 = kBlock / N8;
    static_assert(Wd::A == N8, "the loss folds into the double lanes of the gradient sums");
    constexpr std::int64_t C = kChunkBlocks * kBlock;  // event slots per chunk
    const std::int64_t d = kD > 0 ? kD : L.d, H = kH > 0 ? kH : L.out[0], P = L.n_params;
    const T* __restrict W1 = p;
    const T* __restrict b1 = p + H * d;
    const T* __restrict v = b1 + H;
    const T b2 = v[H];
    const std::int64_t gb1_i = H * d, gv_i = gb1_i + H, gb2_i = gv_i + H;  // flat parameter order
    double* __restrict gl = acc + P * N8;
    T* __restrict S = buf;              // H x C: z_j, then sigmoid_j
    T* __restrict E = buf + H * C;      // H x C: e_j, then sigmoid'_j
    T* __restrict Q = buf + 2 * H * C;  // C: q = dL/df
    constexpr int kHmax = kH > 0 ? kH : kMaxHidden1;
    for (std::int64_t ib0 = 0; ib0 < nb; ib0 += kChunkBlocks) {
        const std::int64_t nbc = std::min(kChunkBlocks, nb - ib0), nv = nbc * kU;
        const T* xc = xs + ib0 * d * kBlock;
        // (1) z_j, e_j
        for (std::int64_t i = 0; i < nv; ++i) {
            const T* x = xc + (i / kU) * d * kBlock + (i % kU) * N;
            for (std::int64_t j = 0; j < H; ++j) {
                V z = b1[j] + W1[j * d] * detail::load<V>(x);
                for (std::int64_t k = 1; k < d; ++k) z += W1[j * d + k] * detail::load<V>(x + k * kBlock);
                detail::store(S + j * C + i * N, z);
                detail::store(E + j * C + i * N, detail::vexp<detail::ExpClamp::low>(detail::neg_abs(z)));
            }
        }
        // (2) sigmoid_j = 1/u_j (z >= 0) or e_j/u_j, u_j = 1 + e_j; sigmoid'_j = e_j/u_j^2; f; q
        for (std::int64_t i = 0; i < nv; ++i) {
            V pre[kHmax];
            V prod = detail::splat<V>(1);
            for (std::int64_t j = 0; j < H; ++j) {
                pre[j] = prod;
                prod *= 1 + detail::load<V>(E + j * C + i * N);
            }
            // rs = 1 / (u_j ... u_{H-1}) going down, so 1/u_j = rs * (u_0 ... u_{j-1})
            V rs = 1 / prod, f = detail::splat<V>(b2);
            for (std::int64_t j = H - 1; j >= 0; --j) {
                const V e = detail::load<V>(E + j * C + i * N);
                const V r = rs * pre[j];
                rs *= 1 + e;
                const V er = e * r;
                const V sg = detail::load<V>(S + j * C + i * N) < 0 ? er : r;
                detail::store(S + j * C + i * N, sg);
                detail::store(E + j * C + i * N, er * r);
                f += v[j] * sg;
            }
            const std::int64_t slot = ib0 * kBlock + i * N;
            const V wv = detail::load<V>(wt + slot);
            V q;
            if (kRef) {
                V ef;
                if constexpr (std::is_same_v<T, float>)  // beyond 88: inf (the exp's upper clamp is not needed)
                    ef = f > 88.0f ? detail::splat<V>(std::numeric_limits<float>::infinity())
                                   : detail::vexp<detail::ExpClamp::low>(f);
                else
                    ef = detail::vexp(f);
                q = wv * ef;
                if (kLoss) detail::acc_add(gl, detail::load_wide<T, N>(w + slot) * (Wd::of(ef) - 1.0));
            } else {
                q = -wv;
                if (kLoss) detail::acc_add(gl, -(detail::load_wide<T, N>(w + slot) * Wd::of(f)));
            }
            detail::store(Q + i * N, q);
        }
        if (!kGrad) continue;
        // (3) gradient, a block at a time (kU8 vectors of Simd<T>'s N8 lanes whatever kN is)
        auto put = [acc](std::int64_t j, V8 x) FASTNPLM_INLINE { detail::acc_add(acc + j * N8, W8::of(x)); };
        for (std::int64_t bl = 0; bl < nbc; ++bl) {
            const std::int64_t o = bl * kBlock;
            const T* xb = xc + bl * d * kBlock;
            V8 q[kU8];
            for (int u = 0; u < kU8; ++u) q[u] = detail::load<V8>(Q + o + u * N8);
            V8 sq = q[0];
            for (int u = 1; u < kU8; ++u) sq += q[u];
            put(gb2_i, sq);
            for (std::int64_t j = 0; j < H; ++j) {
                const T* Sj = S + j * C + o;
                const T* Ej = E + j * C + o;
                V8 sv = q[0] * detail::load<V8>(Sj);
                for (int u = 1; u < kU8; ++u) sv += q[u] * detail::load<V8>(Sj + u * N8);
                put(gv_i + j, sv);
                V8 D[kU8];
                for (int u = 0; u < kU8; ++u) D[u] = q[u] * detail::load<V8>(Ej + u * N8);
                V8 sb = D[0];
                for (int u = 1; u < kU8; ++u) sb += D[u];
                put(gb1_i + j, sb);
                for (std::int64_t k = 0; k < d; ++k) {
                    const T* xk = xb + k * kBlock;
                    V8 sw = D[0] * detail::load<V8>(xk);
                    for (int u = 1; u < kU8; ++u) sw += D[u] * detail::load<V8>(xk + u * N8);
                    put(j * d + k, sw);
                }
            }
        }
    }
}
#endif

// Blocks [b0, b1) of an event set for a list of networks: out[i * out_stride + ...] receives
// network nets[i]'s gradient (P entries, when kGrad) and loss (entry P). kN: the lanes of the
// vectors (Simd<T>'s, or 16 for float in FASTNPLM_V4 functions; the same bits either way).
template <class T, int kN, bool kRef, bool kGrad, bool kLoss>
FASTNPLM_INLINE inline void group_pass_impl(const Layout& L, const EventBlocks<T>& ev, std::int64_t b0, std::int64_t b1,
                                            const double* params, const std::int64_t* nets, std::int64_t n_nets,
                                            double* out, std::int64_t out_stride, Scratch<T>& s) {
    const std::int64_t P = L.n_params;
    const T* xs = ev.xs.data() + b0 * L.d * kBlock;
    const T* wt = ev.wt.data() + b0 * kBlock;
    const double* w = ev.w.data() + b0 * kBlock;
    T* pt = s.pt.data();
    for (std::int64_t i = 0; i < n_nets; ++i) {
        const double* pd = params + nets[i] * P;
        for (std::int64_t j = 0; j < P; ++j) pt[j] = static_cast<T>(pd[j]);
        double* o = out + i * out_stride;
#ifdef FASTNPLM_HAVE_SIMD
        if (L.one_hidden) {
            constexpr std::int64_t N = detail::Wide<T, kN>::A;  // double lanes per sum
            double* acc = s.gacc.data();
            std::fill(acc, acc + (P + 1) * N, 0.0);
            // compiled for the 1D toy's 1-4-1 and for d-4-1; any other d-h-1 with h, d at run time
            // (measured 1-4-1, one thread, ms/epoch: float32 0.87 fixed vs 0.94 at run time; float64
            // 1.97 vs 3.01)
            const std::int64_t d = L.d, h = L.out[0];
            T* cb = s.chunk.data();
            if (h == 4 && d == 1)
                run_blocks_1h<T, kN, kRef, kGrad, kLoss, 1, 4>(L, pt, xs, b1 - b0, wt, w, acc, cb);
            else if (h == 4)
                run_blocks_1h<T, kN, kRef, kGrad, kLoss, 0, 4>(L, pt, xs, b1 - b0, wt, w, acc, cb);
            else
                run_blocks_1h<T, kN, kRef, kGrad, kLoss>(L, pt, xs, b1 - b0, wt, w, acc, cb);
            for (std::int64_t j = kGrad ? 0 : P; j <= (kLoss ? P : P - 1); ++j) {
                double a = 0.0;
                for (std::int64_t e = 0; e < N; ++e) a += acc[j * N + e];
                o[j] = a;
            }
            if (kGrad)  // the first layer's gradient sums leave out v_j
                for (std::int64_t j = 0; j < h; ++j) {
                    const double vj = static_cast<double>(pt[h * d + h + j]);
                    o[h * d + j] *= vj;
                    for (std::int64_t k = 0; k < d; ++k) o[j * d + k] *= vj;
                }
            continue;
        }
#endif
        if (kLoss) std::fill(s.lacc.begin(), s.lacc.end(), 0.0);
        if (kGrad) std::fill(s.gacc.begin(), s.gacc.end(), 0.0);
        run_blocks<T, kN, kRef, kGrad, kLoss>(L, pt, xs, b1 - b0, wt, w, s);
        if (kGrad)
            for (std::int64_t j = 0; j < P; ++j) {
                double acc = 0.0;
                for (std::int64_t e = 0; e < kGradLanes<T>; ++e) acc += s.gacc[j * kGradLanes<T> + e];
                o[j] = acc;
            }
        if (!kLoss) continue;
        double acc = 0.0;
        for (std::int64_t e = 0; e < kBlock; ++e) acc += s.lacc[e];
        o[P] = acc;
    }
}

// grad and loss: which of the two the pass computes (at least one); the loss costs a few
// instructions per event, so the training loop asks for it only on the epochs it records.
template <class T, int kN = detail::Simd<T>::N>
FASTNPLM_INLINE inline void group_pass_t(const Layout& L, const EventBlocks<T>& ev, std::int64_t b0, std::int64_t b1,
                                         bool ref, bool grad, bool loss, const double* params, const std::int64_t* nets,
                                         std::int64_t n_nets, double* out, std::int64_t out_stride, Scratch<T>& s) {
    auto run = [&](auto kref, auto kgrad, auto kloss) FASTNPLM_INLINE {
        group_pass_impl<T, kN, decltype(kref)::value, decltype(kgrad)::value, decltype(kloss)::value>(
            L, ev, b0, b1, params, nets, n_nets, out, out_stride, s);
    };
    using Y = std::true_type;
    using N = std::false_type;
    if (ref) {
        if (!grad)
            run(Y{}, N{}, Y{});
        else if (loss)
            run(Y{}, Y{}, Y{});
        else
            run(Y{}, Y{}, N{});
    } else {
        if (!grad)
            run(N{}, N{}, Y{});
        else if (loss)
            run(N{}, Y{}, Y{});
        else
            run(N{}, Y{}, N{});
    }
}

// The hot entry points, one per precision (target_clones does not take templates).
FASTNPLM_HOT void group_pass(const Layout& L, const EventBlocks<double>& ev, std::int64_t b0, std::int64_t b1, bool ref,
                             bool grad, bool loss, const double* params, const std::int64_t* nets, std::int64_t n_nets,
                             double* out, std::int64_t out_stride, Scratch<double>& s) {
    group_pass_t<double>(L, ev, b0, b1, ref, grad, loss, params, nets, n_nets, out, out_stride, s);
}

FASTNPLM_HOT void group_pass(const Layout& L, const EventBlocks<float>& ev, std::int64_t b0, std::int64_t b1, bool ref,
                             bool grad, bool loss, const double* params, const std::int64_t* nets, std::int64_t n_nets,
                             double* out, std::int64_t out_stride, Scratch<float>& s) {
    group_pass_t<float>(L, ev, b0, b1, ref, grad, loss, params, nets, n_nets, out, out_stride, s);
}

#ifdef FASTNPLM_HAVE_V4
// The float32 pass in 16-lane vectors, for CPUs with AVX-512 (cpu_has_v4): the same bits as
// group_pass's 8 lanes (run_blocks_1h and run_blocks say how).
FASTNPLM_V4 void group_pass_x16(const Layout& L, const EventBlocks<float>& ev, std::int64_t b0, std::int64_t b1,
                                bool ref, bool grad, bool loss, const double* params, const std::int64_t* nets,
                                std::int64_t n_nets, double* out, std::int64_t out_stride, Scratch<float>& s) {
    group_pass_t<float, 16>(L, ev, b0, b1, ref, grad, loss, params, nets, n_nets, out, out_stride, s);
}
#endif

// The lanes of a float32 pass over layout L: 16 (group_pass_x16) for one hidden layer where the
// CPU has AVX-512, else 8. The layer-by-layer pass stays at 8: at 16 lanes it measured slower on
// Zen 4 (5-5-5-5-1, one thread, 2.14 vs 2.09 ms per epoch), where run_blocks_1h gains (1-4-1:
// 0.56 vs 0.67 ms; bench/results/neural_fit_cpu_avx512.json). FASTNPLM_F32_LANES=8 or 16 in
// the environment forces either (16 only where the CPU has AVX-512): benchmarks compare them.
int choose_float32_lanes(const Layout& L) {
#ifdef FASTNPLM_HAVE_V4
    static const bool v4 = detail::cpu_has_v4();
    const char* env = std::getenv("FASTNPLM_F32_LANES");
    const std::string force = env != nullptr ? env : "";
    if (force == "8" || !v4) return 8;
    return force == "16" || L.one_hidden ? 16 : 8;
#else
    (void)L;
    return 8;
#endif
}

FASTNPLM_HOT void predict_blocks(const Layout& L, const double* params, const EventBlocks<double>& ev, std::int64_t b0,
                                 std::int64_t b1, double* out, Scratch<double>& s) {
    for (std::int64_t ib = b0; ib < b1; ++ib) {
        forward_block<double, false>(L, params, ev.xs.data() + ib * L.d * kBlock, s.act.data(), s.der.data(),
                                     s.pre.data(), s.f.data());
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

// The events of a pass in the precision T.
template <class T>
struct EventSets {
    EventBlocks<T> ref;
    std::vector<EventBlocks<T>> data;
    EventSets(MatrixView reference, const double* w, const std::vector<MatrixView>& d) : ref(reference, w) {
        data.reserve(d.size());
        for (const MatrixView& x : d) data.emplace_back(x, nullptr);
    }
};

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
    std::unique_ptr<EventSets<double>> f64;  // exactly one of the two is set
    std::unique_ptr<EventSets<float>> f32;
    std::int64_t ref_groups = 0;
    std::vector<std::int64_t> data_groups;
    int threads;
    int lanes;  // of the float32 pass: 8, or 16 (group_pass_x16)
    Impl(const MlpShape& shape, MatrixView reference, const double* w, const std::vector<MatrixView>& d, int t,
         MlpPrecision precision, bool specialised)
        : L(make_layout(shape, specialised)), threads(resolve_threads(t)), lanes(choose_float32_lanes(L)) {
        check_events(reference, L.d, "reference");
        if (w == nullptr) throw std::invalid_argument("mlp: reference weights are missing");
        if (d.empty()) throw std::invalid_argument("mlp: no networks (data list is empty)");
        for (std::size_t b = 0; b < d.size(); ++b) check_events(d[b], L.d, "data set " + std::to_string(b));
        if (precision == MlpPrecision::float32)
            f32 = std::make_unique<EventSets<float>>(reference, w, d);
        else
            f64 = std::make_unique<EventSets<double>>(reference, w, d);
        ref_groups = n_groups((reference.rows + kBlock - 1) / kBlock);
        for (const MatrixView& x : d) data_groups.push_back(n_groups((x.rows + kBlock - 1) / kBlock));
    }

    template <class T>
    void run(const EventSets<T>& ev, const double* params, const std::int64_t* nets, std::int64_t n_nets, double* loss,
             double* grad) const;

    // group_pass at this pass's lanes
    template <class T>
    void group(const EventBlocks<T>& ev, std::int64_t b0, std::int64_t b1, bool ref, bool grad, bool loss,
               const double* params, const std::int64_t* nets, std::int64_t n_nets, double* out,
               std::int64_t out_stride, Scratch<T>& s) const {
#ifdef FASTNPLM_HAVE_V4
        if constexpr (std::is_same_v<T, float>)
            if (lanes == 16)
                return group_pass_x16(L, ev, b0, b1, ref, grad, loss, params, nets, n_nets, out, out_stride, s);
#endif
        group_pass(L, ev, b0, b1, ref, grad, loss, params, nets, n_nets, out, out_stride, s);
    }
};

template <class T>
void MlpPass::Impl::run(const EventSets<T>& ev, const double* params, const std::int64_t* nets, std::int64_t n_nets,
                        double* loss, double* grad) const {
    const std::int64_t P = L.n_params, W = P + 1, gr = ref_groups;
    const bool want_grad = grad != nullptr, want_loss = loss != nullptr;
    // Tasks: reference groups (every listed network each), then (network, data group) pairs.
    std::vector<std::int64_t> first(n_nets + 1, 0);
    for (std::int64_t i = 0; i < n_nets; ++i) first[i + 1] = first[i] + data_groups[nets[i]];
    const std::int64_t n_tasks = gr + first[n_nets];
    std::vector<double> ref_part(static_cast<size_t>(gr * n_nets * W)),
        data_part(static_cast<size_t>(first[n_nets] * W));
#pragma omp parallel num_threads(threads) if (n_tasks > 1 && threads > 1)
    {
        Scratch<T> s(L);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t t = 0; t < n_tasks; ++t) {
            if (t < gr) {
                const std::int64_t nb = ev.ref.nb;
                group(ev.ref, nb * t / gr, nb * (t + 1) / gr, true, want_grad, want_loss, params, nets, n_nets,
                      ref_part.data() + t * n_nets * W, W, s);
            } else {
                const std::int64_t u = t - gr;
                const std::int64_t i = std::upper_bound(first.begin(), first.end(), u) - first.begin() - 1;
                const EventBlocks<T>& d = ev.data[nets[i]];
                const std::int64_t g = u - first[i], G = first[i + 1] - first[i], nb = d.nb;
                group(d, nb * g / G, nb * (g + 1) / G, false, want_grad, want_loss, params, nets + i, 1,
                      data_part.data() + u * W, W, s);
            }
        }
    }
    for (std::int64_t i = 0; i < n_nets; ++i) {
        const std::int64_t b = nets[i];
        if (want_loss) {
            double lr = 0.0, ld = 0.0;
            for (std::int64_t g = 0; g < gr; ++g) lr += ref_part[(g * n_nets + i) * W + P];
            for (std::int64_t g = first[i]; g < first[i + 1]; ++g) ld += data_part[g * W + P];
            loss[b] = lr + ld;
        }
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

MlpPass::MlpPass(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                 const std::vector<MatrixView>& data, int threads, MlpPrecision precision, bool specialised)
    : impl_(std::make_unique<Impl>(shape, reference, reference_weights, data, threads, precision, specialised)) {}
MlpPass::~MlpPass() = default;

std::int64_t MlpPass::n_networks() const { return static_cast<std::int64_t>(impl_->data_groups.size()); }
int MlpPass::float32_lanes() const { return impl_->lanes; }
std::int64_t MlpPass::n_params() const { return impl_->L.n_params; }

void MlpPass::run(const double* params, const std::int64_t* nets, std::int64_t n_nets, double* loss,
                  double* grad) const {
    if (loss == nullptr && grad == nullptr)
        throw std::invalid_argument("MlpPass::run: neither loss nor grad is wanted");
    if (impl_->f32)
        impl_->run(*impl_->f32, params, nets, n_nets, loss, grad);
    else
        impl_->run(*impl_->f64, params, nets, n_nets, loss, grad);
}

namespace {

// The CPU epoch: the pass over the active networks (their list is the stop state), then the
// host Adam step of each, in place on the caller's parameters.
class CpuEpochs final : public MlpEpochs {
public:
    CpuEpochs(const MlpShape& shape, MatrixView reference, const double* w, const std::vector<MatrixView>& data,
              double* params, std::int64_t n_history, int threads, MlpPrecision precision)
        : pass_(shape, reference, w, data, threads, precision),
          B_(pass_.n_networks()),
          P_(pass_.n_params()),
          nh_(n_history),
          params_(params),
          m_(static_cast<size_t>(B_ * P_), 0.0),
          v_(static_cast<size_t>(B_ * P_), 0.0),
          grad_(static_cast<size_t>(B_ * P_)),
          loss_(static_cast<size_t>(B_)),
          history_(static_cast<size_t>(B_ * nh_), std::numeric_limits<double>::quiet_NaN()),
          finite_(static_cast<size_t>(B_), 1),
          done_(static_cast<size_t>(B_), 0) {
        active_.resize(static_cast<size_t>(B_));
        for (std::int64_t b = 0; b < B_; ++b) active_[b] = b;
    }

    void epoch(const MlpAdamStep& a) override {
        if (active_.empty()) return;
        // the loss only where it is recorded: a non-finite loss has a non-finite gradient (the
        // reference's e^f overflows both; f is finite for finite parameters and events)
        const bool want_loss = a.record >= 0;
        pass_.run(params_, active_.data(), static_cast<std::int64_t>(active_.size()),
                  want_loss ? loss_.data() : nullptr, grad_.data());
        std::vector<std::int64_t> still;
        still.reserve(active_.size());
        for (std::int64_t b : active_) {
            const double* g = grad_.data() + b * P_;
            if ((want_loss && !std::isfinite(loss_[b])) || !all_finite(g, P_)) {
                finite_[b] = 0;
                continue;
            }
            if (a.record >= 0) history_[b * nh_ + a.record] = loss_[b];
            double* p = params_ + b * P_;
            double* mb = m_.data() + b * P_;
            double* vb = v_.data() + b * P_;
            for (std::int64_t j = 0; j < P_; ++j) {
                mb[j] += a.c1 * (g[j] - mb[j]);
                vb[j] = vb[j] * a.beta2 + a.c2 * g[j] * g[j];
                const double denom = std::sqrt(vb[j]) / a.bc2_sqrt + a.eps;
                const double pj = p[j] - a.step_size * (mb[j] / denom);
                p[j] = std::min(a.clip, std::max(-a.clip, pj));
            }
            done_[b] = a.epoch + 1;
            still.push_back(b);
        }
        active_.swap(still);
    }

    std::int64_t stop_check_every() const override { return 1; }  // the state is on the host: free
    bool all_stopped() override { return active_.empty(); }

    void final_loss(double* loss) override {
        std::fill(loss, loss + B_, std::numeric_limits<double>::quiet_NaN());
        if (!active_.empty())
            pass_.run(params_, active_.data(), static_cast<std::int64_t>(active_.size()), loss, nullptr);
    }

    void results(double* params, std::uint8_t* finite, std::int64_t* epochs_done, double* history) override {
        if (params != params_) std::copy(params_, params_ + B_ * P_, params);
        std::copy(finite_.begin(), finite_.end(), finite);
        std::copy(done_.begin(), done_.end(), epochs_done);
        std::copy(history_.begin(), history_.end(), history);
    }

    void set_moments(const double* m, const double* v) override {
        std::copy(m, m + B_ * P_, m_.begin());
        std::copy(v, v + B_ * P_, v_.begin());
    }
    void moments(double* m, double* v) override {
        std::copy(m_.begin(), m_.end(), m);
        std::copy(v_.begin(), v_.end(), v);
    }

private:
    const MlpPass pass_;
    std::int64_t B_, P_, nh_;
    double* params_;
    std::vector<double> m_, v_, grad_, loss_, history_;
    std::vector<std::uint8_t> finite_;
    std::vector<std::int64_t> done_, active_;
};

// The CPU MlpOps: MlpPass for the pass, CpuEpochs for training.
class CpuMlpOps final : public MlpOps {
public:
    explicit CpuMlpOps(int threads) : threads_(threads) {}

    void loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   MlpPrecision precision) const override {
        const MlpPass pass(shape, reference, reference_weights, data, threads_, precision);
        std::vector<std::int64_t> all(data.size());
        for (std::size_t b = 0; b < all.size(); ++b) all[b] = static_cast<std::int64_t>(b);
        pass.run(params, all.data(), static_cast<std::int64_t>(all.size()), loss, grad);
    }

    std::unique_ptr<MlpEpochs> epochs(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                                      const std::vector<MatrixView>& data, double* params, std::int64_t n_history,
                                      MlpPrecision precision) const override {
        return std::make_unique<CpuEpochs>(shape, reference, reference_weights, data, params, n_history, threads_,
                                           precision);
    }

private:
    int threads_;
};

}  // namespace

std::unique_ptr<MlpOps> make_cpu_mlp_ops(int threads) { return std::make_unique<CpuMlpOps>(threads); }

}  // namespace detail

void mlp_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad, int threads,
                   MlpPrecision precision) {
    detail::make_cpu_mlp_ops(threads)->loss_grad(shape, reference, reference_weights, data, params, loss, grad,
                                                 precision);
}

void mlp_predict(const MlpShape& shape, const double* params, MatrixView x, double* out, int threads) {
    const Layout L = make_layout(shape);
    if (x.rows == 0) return;
    check_events(x, L.d, "x");
    const EventBlocks<double> ev(x, nullptr);
    constexpr std::int64_t chunk = 32;  // blocks per task
    const std::int64_t nchunks = (ev.nb + chunk - 1) / chunk;
    const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if (nchunks > 1 && nt > 1)
    {
        Scratch<double> s(L);
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t c = 0; c < nchunks; ++c)
            predict_blocks(L, params, ev, c * chunk, std::min(ev.nb, (c + 1) * chunk), out, s);
    }
}

}  // namespace fastnplm
