// Triangular sweeps and LAPACK factorisations against dense products.
#include <cstdint>
#include <random>
#include <vector>

#include "check.hpp"
#include "dense.hpp"

TEST(triangular_sweeps_and_factorisations) {
    const int n = 37;
    std::mt19937_64 g(3);
    std::uniform_real_distribution<double> U(-1, 1);
    std::vector<double> a(n * n, 0.0), x(n), b(n);
    for (int j = 0; j < n; ++j)  // column-major upper factor with a healthy diagonal
        for (int i = 0; i <= j; ++i) a[i + j * n] = i == j ? 2.0 + U(g) : U(g);
    for (auto& e : x) e = U(g);
    for (bool trans : {false, true}) {
        for (int i = 0; i < n; ++i) {  // b = U x or U^T x, densely
            double s = 0;
            for (int j = 0; j < n; ++j)
                s += (trans ? (j <= i ? a[j + i * n] : 0.0) : (i <= j ? a[i + j * n] : 0.0)) * x[j];
            b[i] = s;
        }
        std::vector<double> y(x);
        fastnplm::dense::trmv_upper(a.data(), n, trans, y.data());
        for (int i = 0; i < n; ++i) CHECK_CLOSE(y[i], b[i], 1e-13, 1e-13);
        fastnplm::dense::trsv_upper(a.data(), n, trans, b.data());
        for (int i = 0; i < n; ++i) CHECK_CLOSE(b[i], x[i], 1e-12, 1e-12);
    }
    // cholesky_upper(U^T U) gives back U (positive diagonal), lauum_upper gives U U^T
    std::vector<double> s(n * n, 0.0), uut(n * n, 0.0);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j)
            for (int k = 0; k < n; ++k) {
                s[i + j * n] += (k <= i ? a[k + i * n] : 0.0) * (k <= j ? a[k + j * n] : 0.0);
                uut[i + j * n] += (i <= k ? a[i + k * n] : 0.0) * (j <= k ? a[j + k * n] : 0.0);
            }
    CHECK(fastnplm::dense::cholesky_upper(s.data(), n) == 0);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i <= j; ++i) CHECK_CLOSE(s[i + j * n], a[i + j * n], 1e-10, 1e-12);
    std::vector<double> l(a);
    fastnplm::dense::lauum_upper(l.data(), n);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i <= j; ++i) CHECK_CLOSE(l[i + j * n], uut[i + j * n], 1e-12, 1e-12);
}

namespace {

// A random upper factor (column-major) with a healthy diagonal, and S = U^T U.
void random_factor(int n, std::uint64_t seed, std::vector<double>& u, std::vector<double>& s) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<double> U(-1, 1);
    u.assign(static_cast<size_t>(n) * n, 0.0);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i <= j; ++i) u[i + static_cast<size_t>(j) * n] = i == j ? 0.5 * n + U(g) : U(g);
    s.assign(u.size(), 0.0);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i <= j; ++i) {
            double acc = 0.0;
            for (int k = 0; k <= i; ++k) acc += u[k + static_cast<size_t>(i) * n] * u[k + static_cast<size_t>(j) * n];
            s[i + static_cast<size_t>(j) * n] = acc;
        }
}

}  // namespace

TEST(tiled_factorisations_match_lapack_and_any_thread_count) {
    const int n = 1300;  // above the tiled threshold, with a narrower last tile
    std::vector<double> u, s;
    random_factor(n, 11, u, s);
    std::vector<double> one(s), two(s), three(s);
    CHECK(fastnplm::dense::cholesky_upper(one.data(), n) == 0);
    CHECK(fastnplm::dense::cholesky_upper(two.data(), n, 2) == 0);
    CHECK(fastnplm::dense::cholesky_upper(three.data(), n, 3) == 0);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i <= j; ++i) {
            const size_t k = i + static_cast<size_t>(j) * n;
            CHECK_CLOSE(two[k], u[k], 1e-10, 1e-12);
            CHECK_CLOSE(two[k], one[k], 1e-12, 1e-13);
            CHECK(two[k] == three[k]);  // bit for bit
        }
    std::vector<double> l1(u), l2(u), l3(u);
    fastnplm::dense::lauum_upper(l1.data(), n);
    fastnplm::dense::lauum_upper(l2.data(), n, 2);
    fastnplm::dense::lauum_upper(l3.data(), n, 3);
    for (int j = 0; j < n; j += 7)
        for (int i = 0; i <= j; ++i) {
            const size_t k = i + static_cast<size_t>(j) * n;
            double want = 0.0;  // (U U^T)_ij = sum_{k >= j} U_ik U_jk
            for (int c = j; c < n; ++c) want += u[i + static_cast<size_t>(c) * n] * u[j + static_cast<size_t>(c) * n];
            CHECK_CLOSE(l2[k], want, 1e-12, 1e-10);
            CHECK_CLOSE(l2[k], l1[k], 1e-12, 1e-10);
            CHECK(l2[k] == l3[k]);
        }
    // a matrix that is not positive definite: the failing column is reported, as LAPACK does
    std::vector<double> bad(s);
    bad[700 + static_cast<size_t>(700) * n] = -1.0;
    const int info = fastnplm::dense::cholesky_upper(bad.data(), n, 2);
    CHECK(info == 701);
}

TEST(lane_solves_match_single_solves_for_any_width) {
    const int n = 301;
    std::vector<double> u, s;
    random_factor(n, 5, u, s);
    std::mt19937_64 g(9);
    std::uniform_real_distribution<double> U(-1, 1);
    for (bool trans : {false, true})
        for (std::int64_t ld : {8, 24, 40}) {
            std::vector<double> x(static_cast<size_t>(n) * ld);
            for (auto& e : x) e = U(g);
            std::vector<double> y(x);
            fastnplm::dense::trsm_upper_lanes(u.data(), n, trans, y.data(), ld, 2);
            for (std::int64_t q = 0; q < ld; ++q) {
                std::vector<double> b(n);
                for (int i = 0; i < n; ++i) b[i] = x[i * ld + q];
                fastnplm::dense::trsv_upper(u.data(), n, trans, b.data());
                for (int i = 0; i < n; ++i) CHECK_CLOSE(y[i * ld + q], b[i], 1e-13, 1e-14);
            }
            // a lane alone (ld 8) gives the same bits as inside a wider block, first or last
            for (std::int64_t q : {std::int64_t{0}, ld - 1}) {
                std::vector<double> z(static_cast<size_t>(n) * 8, 0.0);
                for (int i = 0; i < n; ++i) z[i * 8] = x[i * ld + q];
                fastnplm::dense::trsm_upper_lanes(u.data(), n, trans, z.data(), 8, 1);
                for (int i = 0; i < n; ++i) CHECK(z[i * 8] == y[i * ld + q]);
            }
        }
}
