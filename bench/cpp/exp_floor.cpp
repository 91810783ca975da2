// The exp floor of the MLP pass (bench.hpp): the float32 pass's exp and vectorisation alone,
// compiled like the core (FASTNPLM_HOT clones, the core's flags, FASTNPLM_V4 for 16 lanes) so
// that it measures the same code.
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
#include "mlp_pass.hpp"
#include "simd.hpp"
#include "vexp.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // SIMD vectors cross only always-inline boundaries
#endif

namespace fastnplm {

namespace {

// sum over nv vectors (V: N lanes) of x of G exps each, unrolled: G independent chains per vector
template <int G, class V = float>
FASTNPLM_INLINE inline float exp_floor_sweep(const float* x, std::int64_t nv) {
#ifdef FASTNPLM_HAVE_SIMD
    constexpr int N = sizeof(V) / sizeof(float);
    V acc[G] = {};
    for (std::int64_t i = 0; i < nv; ++i) {
        const V xv = detail::load<V>(x + N * i);
        for (int j = 0; j < G; ++j)
            acc[j] += detail::vexp<detail::ExpClamp::low>(detail::neg_abs(xv * (0.5f + 0.1f * j) + (0.05f * j - 0.3f)));
    }
    V a = acc[0];
    for (int j = 1; j < G; ++j) a += acc[j];
    float s = 0;
    for (int l = 0; l < N; ++l) s += a[l];
    return s;
#else
    float s = 0;
    for (std::int64_t i = 0; i < 8 * nv; ++i)
        for (int j = 0; j < G; ++j) s += detail::vexp(-std::fabs(x[i] * (0.5f + 0.1f * j) + (0.05f * j - 0.3f)));
    return s;
#endif
}

// k exps per vector of N floats: sweeps of 5 chains (the fastest per exp here: measured 1
// thread, 202000 events, ms per exp of the sweep at 8 lanes: 5 chains 0.074, 4 chains 0.10, 8
// chains 0.10, where the chains and constants spill registers), then the rest
template <class V>
FASTNPLM_INLINE inline float exp_floor_chunk_t(const float* x, std::int64_t nv, int k) {
    float s = 0;
    for (; k >= 5; k -= 5) s += exp_floor_sweep<5, V>(x, nv);
    switch (k) {
        case 1:
            s += exp_floor_sweep<1, V>(x, nv);
            break;
        case 2:
            s += exp_floor_sweep<2, V>(x, nv);
            break;
        case 3:
            s += exp_floor_sweep<3, V>(x, nv);
            break;
        case 4:
            s += exp_floor_sweep<4, V>(x, nv);
            break;
        default:
            break;
    }
    return s;
}

#ifdef FASTNPLM_HAVE_SIMD
using V8 = detail::f32x8;
#else
using V8 = float;
#endif

// 8 lanes (nv vectors of 8 floats)
FASTNPLM_HOT float exp_floor_chunk(const float* x, std::int64_t nv, int k) { return exp_floor_chunk_t<V8>(x, nv, k); }

#ifdef FASTNPLM_HAVE_V4
// 16 lanes (nv vectors of 16 floats), where the CPU has AVX-512
FASTNPLM_V4 float exp_floor_chunk_x16(const float* x, std::int64_t nv, int k) {
    return exp_floor_chunk_t<detail::f32x16>(x, nv, k);
}
#endif

}  // namespace

double bench::mlp_exp_floor_ms(std::int64_t n_events, int exps_per_event, int threads, int repeats, int lanes) {
    if (lanes != 8 && lanes != 16)
        throw std::invalid_argument("mlp_exp_floor_ms: lanes must be 8 or 16, got " + std::to_string(lanes));
    if (lanes == 16 && !avx512_lanes())
        throw std::invalid_argument("mlp_exp_floor_ms: lanes=16 needs a CPU with AVX-512 and a GCC x86-64 build");
    if (n_events < lanes)
        throw std::invalid_argument("mlp_exp_floor_ms: n_events must be >= " + std::to_string(lanes) + ", got " +
                                    std::to_string(n_events));
    if (exps_per_event < 1 || exps_per_event > 1024)
        throw std::invalid_argument("mlp_exp_floor_ms: exps_per_event must be in [1, 1024], got " +
                                    std::to_string(exps_per_event));
    if (repeats < 1)
        throw std::invalid_argument("mlp_exp_floor_ms: repeats must be >= 1, got " + std::to_string(repeats));
    const std::int64_t nv = n_events / lanes;
    std::vector<float> x(static_cast<size_t>(lanes * nv));
    for (std::int64_t i = 0; i < lanes * nv; ++i) x[i] = static_cast<float>(i % 997) * 0.005f;  // in [0, 5)
    const int nt = resolve_threads(threads);
    double best = std::numeric_limits<double>::infinity();
    volatile float sink = 0;
    for (int r = 0; r < repeats; ++r) {
        float total = 0;
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : total) if (nt > 1)
        for (int t = 0; t < nt; ++t) {
            const std::int64_t v0 = nv * t / nt, v1 = nv * (t + 1) / nt;
#ifdef FASTNPLM_HAVE_V4
            if (lanes == 16) {
                total += exp_floor_chunk_x16(x.data() + 16 * v0, v1 - v0, exps_per_event);
                continue;
            }
#endif
            total += exp_floor_chunk(x.data() + 8 * v0, v1 - v0, exps_per_event);
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, ms);
        sink = sink + total;
    }
    return best;
}

bool bench::avx512_lanes() {
#ifdef FASTNPLM_HAVE_V4
    return detail::cpu_has_v4();
#else
    return false;
#endif
}

int bench::mlp_float32_lanes(std::int64_t d, const std::vector<std::int64_t>& hidden) {
    const MlpShape shape{d, hidden};
    const std::vector<double> x(static_cast<size_t>(d), 0.0), w(1, 1.0);
    const MatrixView one{x.data(), 1, d, d};
    return detail::MlpPass(shape, one, w.data(), {one}, 1, MlpPrecision::float32).float32_lanes();
}

}  // namespace fastnplm
