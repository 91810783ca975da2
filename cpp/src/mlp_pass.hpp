#pragma once
// The MLP backend primitive, for the training loop: the events prepared once (transposed
// into blocks), then loss + gradient of any subset of the B networks per call.
#include <cstdint>
#include <memory>
#include <vector>

#include "fastnplm/mlp.hpp"

namespace fastnplm::detail {

/// Throws std::invalid_argument naming the first bad training option (clip, lr, betas, eps,
/// epochs, history_every); shared by the CPU and CUDA trainers.
void check_train_options(const MlpTrainOptions& o);

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
    /// For the networks nets[0..n_nets): loss[b] and grad[b * P ..] (grad may be nullptr) from
    /// params[b * P ..], b = nets[i]; entries of other networks are not touched.
    void run(const double* params, const std::int64_t* nets, std::int64_t n_nets, double* loss, double* grad) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fastnplm::detail
