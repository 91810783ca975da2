#pragma once
// Small helpers of the solvers: input checks and the compensated sum over events.
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "fastnplm/kernel_nplm.hpp"  // NotPositiveDefinite

namespace fastnplm::detail {

/// Throws std::invalid_argument(what) unless ok.
inline void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
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

/// x in the shortest of %g's forms, for messages.
inline std::string format_number(double x) {
    std::ostringstream s;
    s << x;
    return s.str();
}

/// The compensated sum of n weights.
inline double weight_total(const double* weights, std::int64_t n) {
    Sum s;
    for (std::int64_t i = 0; i < n; ++i) s.add(weights[i]);
    return s.value();
}

/// The checks every kernel solver makes on its reference and centers: at least one center (and
/// an int's worth at most), finite reference weights (n of them) of either sign with a positive
/// total, finite center scales (m of them, when given: their magnitudes scale the
/// preconditioner), and a finite positive width.
inline void require_kernel_inputs(std::int64_t n, const double* weights, std::int64_t m, const double* center_scale,
                                  double sigma) {
    require(m > 0, "need at least one center");
    require(m <= std::numeric_limits<int>::max(), "too many centers");
    require(weights != nullptr, "reference weights are required");
    for (std::int64_t i = 0; i < n; ++i)  // message built only on failure
        if (!std::isfinite(weights[i]))
            require(false, "reference weights must be finite (index " + std::to_string(i) + ")");
    const double total = weight_total(weights, n);
    if (!(total > 0))
        require(false,
                "reference weights must sum to a positive total N(R) (weights of either sign are "
                "accepted), got " +
                    format_number(total));
    if (center_scale)
        for (std::int64_t j = 0; j < m; ++j)
            if (!std::isfinite(center_scale[j]))
                require(false, "center scales must be finite (index " + std::to_string(j) + ")");
    require(std::isfinite(sigma) && sigma > 0, "sigma must be finite and > 0");
}

/// True when some of the n weights is negative: a Newton step's Hessian may then be indefinite.
inline bool any_negative(const double* weights, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i)
        if (weights[i] < 0) return true;
    return false;
}

/// The error of a Newton step whose weighted Hessian is not positive definite: CG met a direction
/// of curvature `curvature` <= 0 at penalty lam.
inline NotPositiveDefinite not_positive_definite(double curvature, double lam) {
    return NotPositiveDefinite(
        "the weighted Hessian of the Newton step is not positive definite: conjugate gradient met curvature " +
        format_number(curvature) + " <= 0 at lam = " + format_number(lam) +
        " (negative reference weights outweigh the rest near some center); use a larger lam, fewer negative "
        "weights, or merge each negative-weight event with its positive neighbours");
}

}  // namespace fastnplm::detail
