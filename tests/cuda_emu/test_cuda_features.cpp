// The projected-feature kernels (cuda/features.cu, the batched-toy path) through the CPU
// emulation, against the CPU backend, at sizes that are not multiples of the row tile. Under
// the emulation device memory is host memory, so device-pointer functions take host arrays.
#include <array>
#include <random>
#include <vector>

#include "check.hpp"
#include "samples.hpp"
#include "backend.hpp"
#include "emu/cuda_emu.hpp"  // emu::transfers
#include "features_cuda.hpp"
#include "fastnplm/kernel_ops.hpp"

using fastnplm::MatrixView;
namespace ce = fastnplm::cuda_emu;

namespace {

using samples::normal;

std::vector<double> transpose(const std::vector<double>& c, std::int64_t m, std::int64_t d) {
    std::vector<double> t(c.size());
    for (std::int64_t j = 0; j < m; ++j)
        for (std::int64_t q = 0; q < d; ++q) t[q * m + j] = c[j * d + q];
    return t;
}

void check_all_close(const std::vector<double>& a, const std::vector<double>& b, double rtol, double atol) {
    CHECK(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK_CLOSE(a[i], b[i], rtol, atol);
}

}  // namespace

TEST(cuda_feature_project_matches_the_cpu) {
    const auto cpu = fastnplm::make_ops(fastnplm::Device::cpu, 1);
    for (auto [n, m, d, r] :
         {std::array<std::int64_t, 4>{1, 1, 1, 1}, {7, 33, 2, 5}, {130, 65, 3, 17}, {257, 20, 1, 33}}) {
        const auto x = normal(n * d, 1), c = normal(m * d, 2), g = normal(m * r, 3), w = normal(n, 4), u = normal(n, 5);
        const auto ct = transpose(c, m, d);
        std::vector<double> fc(n * r), wc(r * r), gc(r), fe(n * r), we(r * r), ge(r);
        cpu->feature_project(MatrixView(x.data(), n, d), MatrixView(c.data(), m, d), 0.4, g.data(), r, w.data(),
                             u.data(), fc.data(), wc.data(), gc.data());
        ce::Workspace ws;
        ce::feature_project({x.data(), n, static_cast<int>(d)}, {ct.data(), m, static_cast<int>(d)}, 0.4, g.data(), r,
                            w.data(), u.data(), fe.data(), we.data(), ge.data(), ws);
        // sums of <= ~300 terms of size <= ~50 in another order
        check_all_close(fe, fc, 1e-12, 1e-12);
        check_all_close(we, wc, 1e-11, 1e-10);
        check_all_close(ge, gc, 1e-11, 1e-11);
        std::vector<double> wo(r * r);  // outputs are optional
        ce::feature_project({x.data(), n, static_cast<int>(d)}, {ct.data(), m, static_cast<int>(d)}, 0.4, g.data(), r,
                            w.data(), nullptr, nullptr, wo.data(), nullptr, ws);
        CHECK(wo == we);
    }
}

TEST(cuda_features_gram_and_expm1_match_the_cpu) {
    const auto cpu = fastnplm::make_ops(fastnplm::Device::cpu, 1);
    for (auto [n, r, b] : {std::array<std::int64_t, 3>{1, 1, 1}, {9, 5, 3}, {131, 17, 130}, {300, 40, 7}}) {
        const auto f = normal(n * r, 6, 0.1), v = normal(r * b, 7, 0.5), w = normal(n, 8);
        std::vector<double> gc(r * r), ge(r * r), ec(b), ee(b);
        cpu->features_gram(MatrixView(f.data(), n, r), w.data(), gc.data());
        cpu->features_expm1_sum(MatrixView(f.data(), n, r), v.data(), b, w.data(), ec.data());
        ce::Workspace ws;
        ce::features_gram(f.data(), n, r, w.data(), ge.data(), ws);
        ce::features_expm1_sum(f.data(), n, r, v.data(), b, w.data(), ee.data(), ws);
        check_all_close(ge, gc, 1e-11, 1e-12);
        check_all_close(ee, ec, 1e-11, 1e-12);
    }
}

TEST(cuda_ops_feature_primitives_match_the_cpu) {
    // through CudaOps (host pointers, device cache), as the spectral path calls them
    const auto cpu = fastnplm::make_ops(fastnplm::Device::cpu, 1);
    const auto gpu = ce::make_ops(0);
    const std::int64_t n = 131, m = 40, d = 2, r = 9, b = 5;
    const auto x = normal(n * d, 11), c = normal(m * d, 12), g = normal(m * r, 13), w = normal(n, 14),
               u = normal(n, 15);
    std::vector<double> fc(n * r), wc(r * r), gc(r), fe(n * r), we(r * r), ge(r);
    cpu->feature_project({x.data(), n, d}, {c.data(), m, d}, 0.3, g.data(), r, w.data(), u.data(), fc.data(), wc.data(),
                         gc.data());
    gpu->feature_project({x.data(), n, d}, {c.data(), m, d}, 0.3, g.data(), r, w.data(), u.data(), fe.data(), we.data(),
                         ge.data());
    check_all_close(fe, fc, 1e-12, 1e-12);
    check_all_close(we, wc, 1e-11, 1e-10);
    check_all_close(ge, gc, 1e-11, 1e-11);
    const auto v = normal(r * b, 16, 0.1);
    std::vector<double> sc(r * r), se(r * r), ec(b), ee(b);
    cpu->features_gram({fc.data(), n, r}, w.data(), sc.data());
    gpu->features_gram({fc.data(), n, r}, w.data(), se.data());
    cpu->features_expm1_sum({fc.data(), n, r}, v.data(), b, w.data(), ec.data());
    gpu->features_expm1_sum({fc.data(), n, r}, v.data(), b, w.data(), ee.data());
    check_all_close(se, sc, 1e-11, 1e-10);
    check_all_close(ee, ec, 1e-11, 1e-11);
    // no events: zero sums, as on the CPU
    std::vector<double> w0(r * r, 7.0), g0(r, 7.0);
    gpu->feature_project({x.data(), 0, d}, {c.data(), m, d}, 0.3, g.data(), r, w.data(), u.data(), nullptr, w0.data(),
                         g0.data());
    for (double z : w0) CHECK(z == 0.0);
    for (double z : g0) CHECK(z == 0.0);
}

TEST(resident_features_expm1_sum_copies_only_the_batch) {
    // the calibration's batched toys on features kept in device memory: the same sums as the CPU's
    // host-pointer primitive, and per batch only V goes in and the b sums come out
    const auto cpu = fastnplm::make_ops(fastnplm::Device::cpu, 1);
    const auto gpu = ce::make_ops(0);
    const std::int64_t n = 300, r = 17, b = 9;
    const auto f = normal(n * r, 21, 0.1), w = normal(n, 22);
    fastnplm::Buffer fd = gpu->alloc(n * r), wd = gpu->alloc(n), fh = cpu->alloc(n * r), wh = cpu->alloc(n);
    gpu->upload(f.data(), fd);
    gpu->upload(w.data(), wd);
    cpu->upload(f.data(), fh);
    cpu->upload(w.data(), wh);
    for (std::uint64_t seed : {23, 24, 25}) {
        const auto v = normal(r * b, seed, 0.5);
        std::vector<double> ec(b), eh(b), ee(b);
        cpu->features_expm1_sum(MatrixView(f.data(), n, r), v.data(), b, w.data(), ec.data());
        cpu->features_expm1_sum(fh, r, v.data(), b, wh, eh.data());
        for (std::int64_t q = 0; q < b; ++q) CHECK(eh[q] == ec[q]);  // the CPU's Buffer path is the same loop
        const emu::Transfers t0 = emu::transfers();
        gpu->features_expm1_sum(fd, r, v.data(), b, wd, ee.data());
        const emu::Transfers& t1 = emu::transfers();
        CHECK(t1.bytes[cudaMemcpyHostToDevice] - t0.bytes[cudaMemcpyHostToDevice] == sizeof(double) * r * b);
        CHECK(t1.bytes[cudaMemcpyDeviceToHost] - t0.bytes[cudaMemcpyDeviceToHost] == sizeof(double) * b);
        check_all_close(ee, ec, 1e-11, 1e-12);
    }
    bool threw = false;
    try {
        std::vector<double> out(b), v(r * b);
        gpu->features_expm1_sum(fd, r + 1, v.data(), b, wd, out.data());
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    CHECK(threw);
}
