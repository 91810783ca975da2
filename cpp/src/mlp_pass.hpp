#pragma once
// The MLP backend primitives. MlpPass (CPU): the events prepared once (transposed into
// blocks), then loss + gradient of any subset of the B networks per call. MlpEpochs: the
// epoch of the training loop (pass, Adam, clip, non-finite stop) behind one interface, a CPU
// implementation (mlp_cpu.cpp, on MlpPass) and a CUDA one (cuda/mlp.cu); the loop itself,
// train_adam, is written once in mlp.cpp against it.
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

/// The coefficients of one Adam epoch, computed once on the host by the training loop (the
/// same doubles reach every backend): torch.optim.Adam's m <- m + c1 (g - m),
/// v <- beta2 v + c2 g^2, p <- clip(p - step_size * m / (sqrt(v) / bc2_sqrt + eps)).
struct AdamStep {
    double c1 = 0, c2 = 0, beta2 = 0, eps = 0, clip = 0, step_size = 0, bc2_sqrt = 0;
    std::int64_t epoch = 0;    ///< 0-based; an updated network's epochs_done becomes epoch + 1
    std::int64_t record = -1;  ///< history column that receives the pre-update loss, or -1
};

/// The MLP epoch primitive: B networks' parameters, Adam moments, stop flags and loss
/// history, kept where the backend computes (host memory on the CPU, device memory on CUDA),
/// so that a backend need not copy anything per epoch. Made by an MlpEpochsFactory, driven by
/// train_adam.
class MlpEpochs {
public:
    virtual ~MlpEpochs() = default;
    /// One epoch of every network still active: loss and gradient at its parameters; a network
    /// whose loss or gradient has a NaN/inf stops (finite = 0, parameters untouched); the others
    /// record the loss (a.record >= 0), take the Adam step and the clip, epochs_done = epoch + 1.
    /// A backend may compute the loss only where it is recorded (the CPU does): a non-finite
    /// loss comes with a non-finite gradient (e^f overflows both; f is finite otherwise).
    virtual void epoch(const AdamStep& a) = 0;
    /// How often the loop may ask all_stopped() (in epochs; 0: never). Asking can cost a
    /// device-to-host copy and a synchronisation.
    virtual std::int64_t stop_check_every() const = 0;
    /// Whether no network is active any more.
    virtual bool all_stopped() = 0;
    /// loss (B): the loss of every active network at its current parameters (no gradient);
    /// NaN for stopped networks.
    virtual void final_loss(double* loss) = 0;
    /// Copies the state out: params (B, P), finite (B), epochs_done (B), history (B, n_history;
    /// NaN where nothing was recorded).
    virtual void results(double* params, std::uint8_t* finite, std::int64_t* epochs_done, double* history) = 0;
    /// Adam's moments (B, P each): set before the first epoch (a resumed training; they start at
    /// zero otherwise), read after the last.
    virtual void set_moments(const double* m, const double* v) = 0;
    virtual void moments(double* m, double* v) = 0;
};

/// Makes a backend's MlpEpochs for B = data.size() networks starting at params (B, P), with
/// room for n_history history columns; the inputs have been validated by train_adam except
/// for the events themselves (the backend checks them).
using MlpEpochsFactory = std::unique_ptr<MlpEpochs> (*)(const MlpShape& shape, MatrixView reference,
                                                        const double* reference_weights,
                                                        const std::vector<MatrixView>& data, double* params,
                                                        std::int64_t n_history, const MlpTrainOptions& options);

/// The CPU MlpEpochs (mlp_cpu.cpp): MlpPass over the active networks, then the Adam step on
/// the host, in place on params.
std::unique_ptr<MlpEpochs> make_cpu_epochs(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                                           const std::vector<MatrixView>& data, double* params, std::int64_t n_history,
                                           const MlpTrainOptions& options);

/// The training loop (mlp_train_adam's contract) on the backend that `make` builds: validation,
/// bias corrections, epoch schedule, history, the final loss, the result.
MlpTrainResult train_adam(MlpEpochsFactory make, const MlpShape& shape, MatrixView reference,
                          const double* reference_weights, const std::vector<MatrixView>& data, double* params,
                          const MlpTrainOptions& options, MlpAdamState* state);

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
    /// For the networks nets[0..n_nets): loss[b] and grad[b * P ..] from params[b * P ..],
    /// b = nets[i]; entries of other networks are not touched. Either of loss and grad may be
    /// nullptr (not computed; the gradient-only pass is the training epoch's), not both.
    void run(const double* params, const std::int64_t* nets, std::int64_t n_nets, double* loss, double* grad) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fastnplm::detail
