#pragma once
// Small helpers of the solvers: input checks and the compensated sum over events.
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace fastnplm::detail {

/// Throws std::invalid_argument(what) unless ok.
inline void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

/// The checks every kernel solver makes on its reference and centers: at least one center (and
/// an int's worth at most), finite positive reference weights (n of them) and center scales
/// (m of them, when given), and a finite positive width.
inline void require_kernel_inputs(std::int64_t n, const double* weights, std::int64_t m, const double* center_scale,
                                  double sigma) {
    require(m > 0, "need at least one center");
    require(m <= std::numeric_limits<int>::max(), "too many centers");
    require(weights != nullptr, "reference weights are required");
    for (std::int64_t i = 0; i < n; ++i)  // message built only on failure
        if (!(std::isfinite(weights[i]) && weights[i] > 0))
            require(false, "reference weights must be finite and positive (index " + std::to_string(i) + ")");
    if (center_scale)
        for (std::int64_t j = 0; j < m; ++j)
            if (!(std::isfinite(center_scale[j]) && center_scale[j] > 0))
                require(false, "center scales must be finite and positive (index " + std::to_string(j) + ")");
    require(std::isfinite(sigma) && sigma > 0, "sigma must be finite and > 0");
}

/// Neumaier-compensated sum accumulator for the long sums over events.
struct Sum {
    double s = 0.0, c = 0.0;
    void add(double x) {
        const double t = s + x;
        c += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
        s = t;
    }
    double value() const { return s + c; }
};

}  // namespace fastnplm::detail
