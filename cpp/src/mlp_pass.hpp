#pragma once
// The CPU pass of the MLP primitives (mlp_cpu.cpp): the events prepared once (transposed into
// blocks), then loss + gradient of any subset of the B networks per call. The CPU MlpOps
// (fastnplm/mlp.hpp) runs on it.
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "fastnplm/mlp.hpp"

namespace fastnplm::detail {

/// Whether v[0..n) holds no NaN or inf.
inline bool all_finite(const double* v, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i])) return false;
    return true;
}

class MlpPass {
public:
    /// Validates and prepares reference (N_R, d) with weights (N_R,) and data[b] (N_D,b, d).
    /// specialised = false forces the general layer-by-layer pass also for one hidden layer
    /// (tests compare the two).
    MlpPass(const MlpShape& shape, MatrixView reference, const double* reference_weights,
            const std::vector<MatrixView>& data, int threads, MlpPrecision precision = MlpPrecision::float64,
            bool specialised = true);
    ~MlpPass();
    std::int64_t n_networks() const;
    std::int64_t n_params() const;
    /// The lanes of the float32 pass's vectors, the same bits either way: 16 for one hidden
    /// layer on CPUs with AVX-512 (GCC x86-64 builds), else 8; FASTNPLM_F32_LANES=8 or 16 in the
    /// environment when the pass is made forces either (16 only where the CPU has AVX-512).
    int float32_lanes() const;
    /// For the networks nets[0..n_nets): loss[b] and grad[b * P ..] from params[b * P ..],
    /// b = nets[i]; entries of other networks are not touched. Either of loss and grad may be
    /// nullptr (not computed; the gradient-only pass is the training epoch's), not both.
    void run(const double* params, const std::int64_t* nets, std::int64_t n_nets, double* loss, double* grad) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fastnplm::detail
