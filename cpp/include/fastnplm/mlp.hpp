#pragma once
// Neural NPLM (D'Agnolo & Wulzer 2019): small fully connected networks trained on the NPLM
// loss with Adam and weight clipping. See docs/method.md section 3.
//
// Network: layer sizes (d, h_1, ..., h_k, 1); hidden activations sigmoid, output linear.
// Parameters of one network, flat (n_params doubles): for each layer l = 1..k+1 in order,
// its weight matrix W_l (h_l x h_{l-1}, row-major: out x in, as torch.nn.Linear.weight)
// then its bias b_l (h_l). Several networks are stored one after the other.
//
// Loss of one network on reference R (weights w_e) and data D:
//   L = sum_R w_e (exp f(x_e) - 1) - sum_D f(x),   t = -2 L.
// Every sum over events runs over a fixed partition of the events that depends on the
// number of events only, partials added in a fixed order: results do not depend on the
// number of threads nor on which other networks share the call.
#include <cstdint>
#include <memory>
#include <vector>

#include "fastnplm/device.hpp"
#include "fastnplm/view.hpp"

namespace fastnplm {

/// Arithmetic of the pass over the events. float64: everything in double. float32: features,
/// activations and exps in float (twice the SIMD lanes), while loss and gradient sums, the
/// parameters and the optimiser stay in double; f and every per-event term then carry float
/// rounding (~1e-7 relative), and e^f overflows (inf, a non-finite loss) beyond f = 88.
enum class MlpPrecision { float64, float32 };

/// Layer sizes of a network: d inputs, hidden widths, one linear output.
struct MlpShape {
    std::int64_t d = 1;                ///< input features, >= 1
    std::vector<std::int64_t> hidden;  ///< hidden widths, each >= 1, at least one layer

    /// Number of trainable parameters (weights and biases of every layer).
    std::int64_t n_params() const;
    /// Throws std::invalid_argument when d < 1, hidden is empty or a width is < 1.
    void validate() const;
};

/// Initial parameters for one network (n_params entries): every weight of layer l uniform in
/// [-a_l, a_l], a_l = sqrt(6 / (fan_in + fan_out)) (Glorot uniform, the Keras default the
/// original NPLM code uses), biases zero; the uniforms u = (s >> 11) * 2^-53 come from the
/// splitmix64 stream s of `seed`, drawn layer by layer in the flat order above. Then clipped
/// to [-clip, clip] (clip <= 0: no clipping).
std::vector<double> mlp_init(const MlpShape& shape, std::uint64_t seed, double clip = 0.0);

/// Loss and gradient of B networks in one pass over the reference (MlpOps::loss_grad) on the CPU
/// backend with `threads` threads.
void mlp_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   int threads = 0, MlpPrecision precision = MlpPrecision::float64);

/// f(x) of one network: x (n, d), params (n_params), out (n).
void mlp_predict(const MlpShape& shape, const double* params, MatrixView x, double* out, int threads = 0);

struct MlpTrainOptions {
    double clip = 9.0;                  ///< every parameter clipped to [-clip, clip] after every update, > 0
    double lr = 1e-3;                   ///< Adam learning rate, > 0
    double beta1 = 0.9;                 ///< Adam first-moment decay, in [0, 1)
    double beta2 = 0.999;               ///< Adam second-moment decay, in [0, 1)
    double eps = 1e-8;                  ///< Adam epsilon (torch's default), > 0
    std::int64_t epochs = 1000;         ///< full-batch updates, >= 1
    std::int64_t history_every = 1000;  ///< record L every this many updates (0: never)
    int threads = 0;                    ///< CPU threads of mlp_train_adam without an MlpOps (<= 0: all cores)
    MlpPrecision precision = MlpPrecision::float64;  ///< arithmetic of the pass over the events
};

struct MlpTrainResult {
    std::vector<double> loss;     ///< (B) L after the last update (t = -2 L)
    std::vector<double> history;  ///< (B, n_history) L after 0, h, 2h, ... updates (h = history_every)
    std::int64_t n_history = 0;
    std::vector<std::uint8_t> finite;       ///< (B) 1 when training finished without a non-finite loss
    std::vector<std::int64_t> epochs_done;  ///< (B) updates made (fewer when training hit a NaN/inf)
};

/// Adam's state of B networks besides their parameters, for continuing a training where an
/// earlier call left it: the same updates, bit for bit, as one call for all the epochs.
struct MlpAdamState {
    std::int64_t steps = 0;    ///< Adam updates already made (the bias corrections continue from here), >= 0
    std::vector<double> m, v;  ///< first and second moments (B, n_params), or empty for zeros
};

/// The coefficients of one Adam epoch, computed once on the host by the training loop (the
/// same doubles reach every backend): torch.optim.Adam's m <- m + c1 (g - m),
/// v <- beta2 v + c2 g^2, p <- clip(p - step_size * m / (sqrt(v) / bc2_sqrt + eps)).
struct MlpAdamStep {
    double c1 = 0, c2 = 0, beta2 = 0, eps = 0, clip = 0, step_size = 0, bc2_sqrt = 0;
    std::int64_t epoch = 0;    ///< 0-based; an updated network's epochs_done becomes epoch + 1
    std::int64_t record = -1;  ///< history column that receives the pre-update loss, or -1
};

/// The MLP epoch primitive: B networks' parameters, Adam moments, stop flags and loss history,
/// kept where the backend computes (host memory on the CPU, device memory on CUDA), so that a
/// backend need not copy anything per epoch. Made by MlpOps::epochs, driven by mlp_train_adam.
class MlpEpochs {
public:
    virtual ~MlpEpochs() = default;
    /// One epoch of every network still active: loss and gradient at its parameters; a network
    /// whose loss or gradient has a NaN/inf stops (finite = 0, parameters untouched); the others
    /// record the loss (a.record >= 0), take the Adam step and the clip, epochs_done = epoch + 1.
    /// A backend may compute the loss only where it is recorded (the CPU does): a non-finite
    /// loss comes with a non-finite gradient (e^f overflows both; f is finite otherwise).
    virtual void epoch(const MlpAdamStep& a) = 0;
    /// How often the loop may ask all_stopped() (in epochs; 0: never). Asking can cost a
    /// device-to-host copy and a synchronisation.
    virtual std::int64_t stop_check_every() const = 0;
    /// Whether no network is active any more.
    virtual bool all_stopped() = 0;
    /// loss (B): the loss of every active network at its current parameters (no gradient);
    /// NaN for stopped networks.
    virtual void final_loss(double* loss) = 0;
    /// Copies the state out: params (B, n_params), finite (B), epochs_done (B), history (B,
    /// n_history; NaN where nothing was recorded).
    virtual void results(double* params, std::uint8_t* finite, std::int64_t* epochs_done, double* history) = 0;
    /// Adam's moments (B, n_params each): set before the first epoch (a resumed training; they
    /// start at zero otherwise), read after the last.
    virtual void set_moments(const double* m, const double* v) = 0;
    virtual void moments(double* m, double* v) = 0;
};

/// The backend interface of the MLP primitives: the pass over the events and the training
/// epoch. The training loop (mlp_train_adam) is written once against it; make_mlp_ops makes the
/// CPU or the CUDA one. Both precisions run on either backend.
class MlpOps {
public:
    virtual ~MlpOps() = default;

    /// Loss and gradient of B networks in one pass over the reference: params (B, n_params);
    /// reference (N_R, d) with weights (N_R,) shared by all; data[b] (N_D,b, d) the data of network
    /// b. loss (B) and grad (B, n_params) are overwritten; grad may be nullptr (loss only).
    virtual void loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                           const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                           MlpPrecision precision) const = 0;

    /// The epoch state of B = data.size() networks starting at params (B, n_params), with room
    /// for n_history loss-history columns; the pass in `precision`. The views and params must
    /// outlive it (the CPU updates params in place; read results() for the final values). Throws
    /// std::invalid_argument when the events do not fit `shape`.
    virtual std::unique_ptr<MlpEpochs> epochs(const MlpShape& shape, MatrixView reference,
                                              const double* reference_weights, const std::vector<MatrixView>& data,
                                              double* params, std::int64_t n_history, MlpPrecision precision) const = 0;
};

/// The MLP backend of `device` (resolve_device: throws std::runtime_error for cuda without one).
/// cpu: on `threads` threads (<= 0: all cores); cuda: the current CUDA device, `threads` unused.
std::unique_ptr<MlpOps> make_mlp_ops(Device device, int threads = 0);

/// Trains B networks at once with full-batch Adam (torch.optim.Adam's update) and clipping on
/// the backend `ops` (options.threads unused): params (B, n_params) holds the initial values and
/// receives the final ones. A network whose loss or gradient turns non-finite stops there
/// (finite = 0, params of its last finite state). state (optional, nullptr): read at the start
/// (steps, moments) and overwritten at the end (steps + the epochs run, the final moments), so a
/// training split into calls with the state passed on equals one call; epochs_done and history
/// count from the start of this call.
MlpTrainResult mlp_train_adam(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                              const std::vector<MatrixView>& data, double* params, const MlpTrainOptions& options,
                              MlpAdamState* state, const MlpOps& ops);

/// Same, on the CPU backend with options.threads threads.
MlpTrainResult mlp_train_adam(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                              const std::vector<MatrixView>& data, double* params, const MlpTrainOptions& options,
                              MlpAdamState* state = nullptr);

}  // namespace fastnplm
