#pragma once
// Reproducible random test inputs shared by the C++ test files.
#include <random>
#include <vector>

namespace samples {

/// n draws of N(0, scale^2) from a mt19937_64 seeded with `seed`.
inline std::vector<double> normal(std::size_t n, unsigned seed, double scale = 1.0) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> N(0.0, scale);
    std::vector<double> v(n);
    for (auto& e : v) e = N(g);
    return v;
}

/// n draws of U(lo, hi) from a mt19937_64 seeded with `seed`.
inline std::vector<double> uniform(std::size_t n, unsigned seed, double lo = -1.0, double hi = 1.0) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<double> U(lo, hi);
    std::vector<double> v(n);
    for (auto& e : v) e = U(g);
    return v;
}

}  // namespace samples
