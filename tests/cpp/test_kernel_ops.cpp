// Backend primitives against naive loops with std::exp.
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.hpp"
#include "check.hpp"
#include "dense.hpp"
#include "samples.hpp"
#include "fastnplm/cuda.hpp"
#include "fastnplm/device.hpp"
#include "fastnplm/kernel_ops.hpp"
#include "fastnplm/mlp.hpp"
#include "vexp.hpp"

using fastnplm::MatrixView;

namespace {

using samples::normal;

// the Gaussian kernel block's exp (x <= 0)
double kernel_exp(double x) {
    return fastnplm::detail::vexp<fastnplm::detail::ExpClamp::low, fastnplm::detail::ExpPoly::horner>(x);
}

double naive_k(const double* x, const double* c, int d, double gamma) {
    double s = 0;
    for (int k = 0; k < d; ++k) s += (x[k] - c[k]) * (x[k] - c[k]);
    return std::exp(-gamma * s);
}

}  // namespace

TEST(vexp_matches_std_exp) {
    double worst = 0;
    for (int i = 0; i <= 200000; ++i) {
        const double x = -708.0 * i / 200000.0;
        const double rel = std::fabs(kernel_exp(x) - std::exp(x)) / std::exp(x);
        worst = std::max(worst, rel);
    }
    CHECK(worst < 1e-15);
    CHECK(kernel_exp(0.0) == 1.0);
    CHECK(kernel_exp(-1e6) <= 3.4e-308);  // clamped, never NaN or negative
}

TEST(vexpm1_matches_std_expm1) {
    double worst = 0;
    for (int i = -200000; i <= 200000; ++i) {
        const double x = 40.0 * i / 200000.0 * (std::abs(i) < 20000 ? 0.01 : 1.0);  // dense near 0
        if (x == 0.0) continue;
        worst = std::max(worst, std::fabs(fastnplm::detail::vexpm1(x) - std::expm1(x)) / std::fabs(std::expm1(x)));
    }
    CHECK(worst < 1e-15);
    CHECK(fastnplm::detail::vexpm1(0.0) == 0.0);
    CHECK(fastnplm::detail::vexpm1(1e-300) == 1e-300);
}

TEST(primitives_match_naive_loops) {
    // n, m not multiples of any block or SIMD width
    const int n = 1037, m = 29, d = 3;
    const double gamma = 0.37;
    auto x = normal(n * d, 1), c = normal(m * d, 2), v = normal(m, 3), w = normal(n, 4);
    std::vector<double> K(n * m);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) K[i * m + j] = naive_k(&x[i * d], &c[j * d], d, gamma);
    auto ops = fastnplm::make_ops(fastnplm::Device::cpu, 2);
    const MatrixView xv(x.data(), n, d), cv(c.data(), m, d);

    std::vector<double> blk(n * (m + 3));
    ops->kernel_block(xv, cv, gamma, blk.data(), m + 3);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) CHECK_CLOSE(blk[i * (m + 3) + j], K[i * m + j], 1e-14, 1e-300);

    std::vector<double> kv(n), ktw(m), fused(m), vm(m * 3);
    for (int j = 0; j < m; ++j)
        for (int q = 0; q < 3; ++q) vm[j * 3 + q] = v[j] * (q + 1);
    std::vector<double> ex(3);
    ops->kernel_mm_expm1_sum(xv, cv, gamma, vm.data(), 3, w.data(), ex.data());
    ops->kernel_mv(xv, cv, gamma, v.data(), kv.data());
    ops->kernel_tmv(xv, cv, gamma, w.data(), ktw.data());
    ops->kernel_fused(xv, cv, gamma, v.data(), w.data(), fused.data());
    for (int i = 0; i < n; ++i) {
        double s = 0;
        for (int j = 0; j < m; ++j) s += K[i * m + j] * v[j];
        CHECK_CLOSE(kv[i], s, 1e-12, 1e-13);
    }
    for (int q = 0; q < 3; ++q) {
        double e = 0;
        for (int i = 0; i < n; ++i) {
            double s = 0;
            for (int j = 0; j < m; ++j) s += K[i * m + j] * v[j] * (q + 1);
            e += w[i] * std::expm1(s);
        }
        CHECK_CLOSE(ex[q], e, 1e-11, 1e-11);
    }
    // stored features: with F = K the same sums; one column alone gives the same bits as in a batch
    std::vector<double> fx(3), f1(1), v1(m);
    ops->features_expm1_sum(MatrixView(K.data(), n, m), vm.data(), 3, w.data(), fx.data());
    for (int j = 0; j < m; ++j) v1[j] = vm[j * 3 + 1];
    ops->features_expm1_sum(MatrixView(K.data(), n, m), v1.data(), 1, w.data(), f1.data());
    for (int q = 0; q < 3; ++q) CHECK_CLOSE(fx[q], ex[q], 1e-12, 1e-12);
    CHECK(f1[0] == fx[1]);
    for (int j = 0; j < m; ++j) {
        double s = 0, f = 0;
        for (int i = 0; i < n; ++i) {
            double kvi = 0;
            for (int l = 0; l < m; ++l) kvi += K[i * m + l] * v[l];
            s += K[i * m + j] * w[i];
            f += K[i * m + j] * w[i] * kvi;
        }
        CHECK_CLOSE(ktw[j], s, 1e-12, 1e-12);
        CHECK_CLOSE(fused[j], f, 1e-12, 1e-12);
    }
}

TEST(reductions_are_identical_for_any_thread_count) {
    const int n = 20011, m = 45, d = 2;
    auto x = normal(n * d, 5), c = normal(m * d, 6), v = normal(m, 7), w = normal(n, 8);
    const MatrixView xv(x.data(), n, d), cv(c.data(), m, d);
    std::vector<double> ref(m), out(m);
    fastnplm::make_ops(fastnplm::Device::cpu, 1)->kernel_fused(xv, cv, 0.5, v.data(), w.data(), ref.data());
    for (int threads : {2, 3, 7}) {
        fastnplm::make_ops(fastnplm::Device::cpu, threads)->kernel_fused(xv, cv, 0.5, v.data(), w.data(), out.data());
        for (int j = 0; j < m; ++j) CHECK(out[j] == ref[j]);  // bitwise
    }
}

TEST(mismatched_dimensions_throw) {
    std::vector<double> x(10), c(9), out(10);
    auto ops = fastnplm::make_ops(fastnplm::Device::cpu, 1);
    CHECK_THROWS(ops->kernel_mv(MatrixView(x.data(), 5, 2), MatrixView(c.data(), 3, 3), 1.0, c.data(), out.data()),
                 std::invalid_argument);
}

TEST(feature_gram_matches_naive_and_is_thread_invariant) {
    // n spans several panels and a ragged last one
    const int n = 3001, m = 13, d = 2;
    auto x = normal(n * d, 21), c = normal(m * d, 22), w = normal(n, 23), u = normal(n, 24);
    // an upper-triangular T, column-major, with a safe diagonal
    std::vector<double> t(m * m, 0.0);
    auto r = normal(m * m, 25);
    for (int j = 0; j < m; ++j)
        for (int i = 0; i <= j; ++i) t[i + j * m] = i == j ? 1.5 + 0.1 * r[i + j * m] : 0.3 * r[i + j * m];
    const MatrixView xv(x.data(), n, d), cv(c.data(), m, d);
    std::vector<double> W(m * m), g(m), W3(m * m), g3(m);
    fastnplm::make_ops(fastnplm::Device::cpu, 2)
        ->feature_gram(xv, cv, 0.6, t.data(), w.data(), u.data(), W.data(), g.data());
    fastnplm::make_ops(fastnplm::Device::cpu, 3)
        ->feature_gram(xv, cv, 0.6, t.data(), w.data(), u.data(), W3.data(), g3.data());
    // naive: b_i solves b_i T = k_i (forward substitution over columns of T)
    std::vector<double> B(n * m);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) {
            double s = naive_k(&x[i * d], &c[j * d], d, 0.6);
            for (int l = 0; l < j; ++l) s -= B[i * m + l] * t[l + j * m];
            B[i * m + j] = s / t[j + j * m];
        }
    for (int a = 0; a < m; ++a) {
        double ga = 0;
        for (int i = 0; i < n; ++i) ga += B[i * m + a] * u[i];
        CHECK_CLOSE(g[a], ga, 1e-11, 1e-11);
        CHECK(g3[a] == g[a]);
        for (int b = 0; b < m; ++b) {
            double s = 0;
            for (int i = 0; i < n; ++i) s += B[i * m + a] * w[i] * B[i * m + b];
            CHECK_CLOSE(W[a * m + b], s, 1e-11, 1e-11);
            CHECK(W3[a * m + b] == W[a * m + b]);
        }
    }
}

// The CPU backend's Buffer methods: host arrays, the solver's loops in index order (dot
// sequential, so bit-equal to the naive sum), the dense ones LAPACK/dense.hpp; sizes checked.
TEST(cpu_buffer_ops_are_the_plain_loops) {
    const auto ops = fastnplm::make_ops(fastnplm::Device::cpu, 2);
    const int n = 9;
    const auto x = normal(n, 40), y = normal(n, 41), s = samples::uniform(n, 42, 0.5, 2.0);
    auto put = [&](const std::vector<double>& v) {
        fastnplm::Buffer b = ops->alloc(static_cast<std::int64_t>(v.size()));
        ops->upload(v.data(), b);
        return b;
    };
    auto get = [&](const fastnplm::Buffer& b) {
        std::vector<double> v(static_cast<std::size_t>(b.size()));
        ops->download(b, v.data());
        return v;
    };
    CHECK(get(ops->alloc(n)) == std::vector<double>(n, 0.0));
    fastnplm::Buffer bx = put(x), by = put(y);
    double d = 0.0;
    for (int i = 0; i < n; ++i) d += x[i] * y[i];
    CHECK(ops->dot(bx, by) == d);
    ops->axpy(0.3, bx, by);
    ops->xpby(bx, -2.0, by);
    std::vector<double> want(y);
    for (int i = 0; i < n; ++i) want[i] = x[i] + -2.0 * (want[i] + 0.3 * x[i]);
    CHECK(get(by) == want);

    std::vector<double> u(n * n, 0.0);  // upper factor with a safe diagonal; lower triangle -1
    const auto r = normal(n * n, 43);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i)
            u[i + j * n] = i > j ? -1.0 : (i == j ? 2.0 + 0.1 * r[i + j * n] : 0.3 * r[i + j * n]);
    fastnplm::Buffer bu = put(u);
    for (bool trans : {false, true}) {
        std::vector<double> h(x);
        fastnplm::dense::trsv_upper(u.data(), n, trans, h.data());
        ops->copy(bx, by);
        ops->trsv_upper(bu, trans, by);
        CHECK(get(by) == h);
        fastnplm::dense::trmv_upper(u.data(), n, trans, h.data());
        ops->trmv_upper(bu, trans, by);
        CHECK(get(by) == h);
    }
    std::vector<double> sym(n * n);  // u^T u mirrored: symmetric
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) sym[i * n + j] = sym[j * n + i] = u[i + j * n] * u[j + j * n];
    ops->symv(put(sym), bx, by);
    const auto sy = get(by);
    for (int i = 0; i < n; ++i) {
        double acc = 0.0;
        for (int j = 0; j < n; ++j) acc += sym[i * n + j] * x[j];
        CHECK(sy[i] == acc);
    }
    ops->scale_columns_upper(bu, put(s));
    ops->divide_shift_upper(bu, n, 7.0, 0.5);
    const auto su = get(bu);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i)
            CHECK(su[i + j * n] == (i > j ? -1.0 : u[i + j * n] * s[j] / 7.0 + (i == j ? 0.5 : 0.0)));
    fastnplm::Buffer longer = ops->alloc(n + 1);
    CHECK_THROWS(ops->axpy(1.0, bx, longer), std::invalid_argument);
    CHECK_THROWS(ops->trsv_upper(bu, false, longer), std::invalid_argument);
    CHECK_THROWS(ops->cholesky_upper(bu, n + 1), std::invalid_argument);
}

TEST(cuda_entry_points_link_and_refuse_without_a_device) {
    // every public CUDA entry point, as a C++ user calls it (fastnplm/cuda.hpp, the factories with
    // Device::cuda): with CUDA built they are the backend's, without they are stubs with the same
    // signatures; without a device (this machine) each says so with std::runtime_error instead of
    // crashing
    if (fastnplm::cuda_device_available()) return;  // the device is exercised by the GPU tests
    CHECK(fastnplm::cuda_built() == !fastnplm::cuda_architectures().empty());
    CHECK(fastnplm::cuda_built() == !fastnplm::cuda_kernel_names().empty());
    fastnplm::MlpShape s;
    s.hidden = {2};
    const std::vector<double> x = {0.1, 0.5, 0.9}, w = {1.0, 1.0, 1.0};
    const fastnplm::MatrixView xv(x.data(), 3, 1);
    std::vector<double> p = fastnplm::mlp_init(s, 1);
    double loss = 0;
    fastnplm::MlpTrainOptions o;
    o.epochs = 1;
    fastnplm::MlpAdamState state;
    CHECK_THROWS(fastnplm::make_ops(fastnplm::Device::cuda), std::runtime_error);
    CHECK_THROWS(fastnplm::make_mlp_ops(fastnplm::Device::cuda)
                     ->loss_grad(s, xv, w.data(), {xv}, p.data(), &loss, nullptr, fastnplm::MlpPrecision::float64),
                 std::runtime_error);
    CHECK_THROWS(fastnplm::mlp_train_adam(s, xv, w.data(), {xv}, p.data(), o, &state,
                                          *fastnplm::make_mlp_ops(fastnplm::Device::cuda)),
                 std::runtime_error);
    CHECK_THROWS(fastnplm::bench::cuda_device_facts(0), std::runtime_error);
    CHECK_THROWS(fastnplm::bench::CudaEventTimer(), std::runtime_error);
}

TEST(device_names_parse_resolve_and_reach_both_factories) {
    using fastnplm::Device;
    for (Device d : {Device::cpu, Device::cuda, Device::automatic})
        CHECK(fastnplm::parse_device(fastnplm::device_name(d)) == d);
    CHECK(std::string(fastnplm::device_name(Device::automatic)) == "auto");
    try {
        fastnplm::parse_device("gpu");
        CHECK(false);
    } catch (const std::invalid_argument& e) {
        // the message names the bad value and the allowed ones
        const std::string m = e.what();
        CHECK(m.find("'gpu'") != std::string::npos && m.find("'cpu', 'cuda' or 'auto'") != std::string::npos);
    }
    CHECK(fastnplm::resolve_device(Device::cpu) == Device::cpu);
    const Device automatic = fastnplm::resolve_device(Device::automatic);
    CHECK(automatic == (fastnplm::cuda_device_available() ? Device::cuda : Device::cpu));
    if (automatic == Device::cpu) {
        // auto falls back to the CPU backend: the same results, bit for bit
        const auto x = normal(3 * 50, 1), c = normal(3 * 7, 2), v = normal(7, 3);
        const MatrixView xv(x.data(), 50, 3), cv(c.data(), 7, 3);
        std::vector<double> a(50), b(50);
        fastnplm::make_ops(Device::automatic, 2)->kernel_mv(xv, cv, 0.4, v.data(), a.data());
        fastnplm::make_ops(Device::cpu, 2)->kernel_mv(xv, cv, 0.4, v.data(), b.data());
        CHECK(a == b);
        CHECK(fastnplm::make_mlp_ops(Device::automatic, 2) != nullptr);
    }
}
