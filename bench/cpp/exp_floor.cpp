// The exp floor of the MLP pass (bench.hpp): the float32 pass's exp and vectorisation alone,
// compiled like the core (FASTNPLM_HOT clones, the core's flags) so that it measures the same code.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.hpp"
#include "fastnplm/kernel_ops.hpp"  // resolve_threads
#include "hot.hpp"
#include "simd.hpp"
#include "vexp.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // SIMD vectors cross only always-inline boundaries
#endif

namespace fastnplm {

namespace {

// sum over nv vectors of x of G exps each, unrolled: G independent chains per vector
template <int G>
FASTNPLM_INLINE inline float exp_floor_sweep(const float* x, std::int64_t nv) {
#ifdef FASTNPLM_HAVE_SIMD
    using V = detail::f32x8;
    V acc[G] = {};
    for (std::int64_t i = 0; i < nv; ++i) {
        const V xv = detail::load<V>(x + 8 * i);
        for (int j = 0; j < G; ++j)
            acc[j] += detail::vexp<detail::ExpClamp::low>(detail::neg_abs(xv * (0.5f + 0.1f * j) + (0.05f * j - 0.3f)));
    }
    V a = acc[0];
    for (int j = 1; j < G; ++j) a += acc[j];
    float s = 0;
    for (int l = 0; l < 8; ++l) s += a[l];
    return s;
#else
    float s = 0;
    for (std::int64_t i = 0; i < 8 * nv; ++i)
        for (int j = 0; j < G; ++j) s += detail::vexp(-std::fabs(x[i] * (0.5f + 0.1f * j) + (0.05f * j - 0.3f)));
    return s;
#endif
}

// k exps per vector: sweeps of 5 chains (the fastest per exp here: measured 1 thread, 202000
// events, ms per exp of the sweep: 5 chains 0.074, 4 chains 0.10, 8 chains 0.10, where the
// chains and constants spill registers), then the rest
FASTNPLM_HOT float exp_floor_chunk(const float* x, std::int64_t nv, int k) {
    float s = 0;
    for (; k >= 5; k -= 5) s += exp_floor_sweep<5>(x, nv);
    switch (k) {
        case 1:
            s += exp_floor_sweep<1>(x, nv);
            break;
        case 2:
            s += exp_floor_sweep<2>(x, nv);
            break;
        case 3:
            s += exp_floor_sweep<3>(x, nv);
            break;
        case 4:
            s += exp_floor_sweep<4>(x, nv);
            break;
        default:
            break;
    }
    return s;
}

}  // namespace

double bench::mlp_exp_floor_ms(std::int64_t n_events, int exps_per_event, int threads, int repeats) {
    if (n_events < 8)
        throw std::invalid_argument("mlp_exp_floor_ms: n_events must be >= 8, got " + std::to_string(n_events));
    if (exps_per_event < 1 || exps_per_event > 1024)
        throw std::invalid_argument("mlp_exp_floor_ms: exps_per_event must be in [1, 1024], got " +
                                    std::to_string(exps_per_event));
    if (repeats < 1)
        throw std::invalid_argument("mlp_exp_floor_ms: repeats must be >= 1, got " + std::to_string(repeats));
    const std::int64_t nv = n_events / 8;
    std::vector<float> x(static_cast<size_t>(8 * nv));
    for (std::int64_t i = 0; i < 8 * nv; ++i) x[i] = static_cast<float>(i % 997) * 0.005f;  // in [0, 5)
    const int nt = resolve_threads(threads);
    double best = std::numeric_limits<double>::infinity();
    volatile float sink = 0;
    for (int r = 0; r < repeats; ++r) {
        float total = 0;
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : total) if (nt > 1)
        for (int t = 0; t < nt; ++t) {
            const std::int64_t v0 = nv * t / nt, v1 = nv * (t + 1) / nt;
            total += exp_floor_chunk(x.data() + 8 * v0, v1 - v0, exps_per_event);
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, ms);
        sink = sink + total;
    }
    return best;
}

}  // namespace fastnplm
