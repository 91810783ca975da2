// Triangular sweeps and LAPACK factorisations against dense products.
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
            for (int j = 0; j < n; ++j) s += (trans ? (j <= i ? a[j + i * n] : 0.0) : (i <= j ? a[i + j * n] : 0.0)) * x[j];
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
