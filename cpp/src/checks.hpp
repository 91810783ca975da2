#pragma once
// Small helpers of the solvers: input checks and the compensated sum over events.
#include <cmath>
#include <stdexcept>
#include <string>

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

}  // namespace fastnplm::detail
