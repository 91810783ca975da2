// Neural NPLM on the device: loss + gradient of B small networks (sigmoid hidden layers, linear
// output) over the reference and each network's data, then the Adam + clip update, all in
// kernels. This file implements the MLP primitives (MlpOps, fastnplm/mlp.hpp: the pass and the
// epoch, MlpEpochs); the training loop is cpp/src/mlp.cpp's mlp_train_adam, the same as the CPU's. An epoch
// makes no copy: parameters, moments, flags and the loss history stay on the device until
// training ends.
//
// Precision (MlpPrecision), as on the CPU: float64 everything in double; float32 the events,
// the staged parameters, activations, exps and deltas in float (mlp_pass_f32_kernel), while the
// loss terms, every sum over events, the parameters and Adam stay in double.
//
// Pass (mlp_pass_kernel): a block takes tiles of T events (T threads, one event each; tile t
// goes to block t mod gridDim.x, a function of n only), grid.y = the networks of the launch.
// Each thread runs its event forward (activations and sigmoid' in shared memory, column =
// thread) and backward (deltas overwrite the sigmoid'). Then the block switches to one thread
// per parameter: parameter p's terms over the tile's T events are summed in event order and
// added to the thread's running sum, so a block's partial is a fixed-order sum over its
// tiles; sum_partials_kernel adds the partials in block order (reference blocks, then data
// blocks). Results are a function of the inputs and the event counts alone.
//
// Adam (adam_kernel): one block per network; torch.optim.Adam's update in the same order of
// operations as the CPU trainer (mlp.cpp), then the clip. A network whose loss or gradient is
// non-finite stops there (its flag is cleared on the device), as on the CPU.
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends.hpp"
#include "device.cuh"
#include "fastnplm/mlp.hpp"
#include "mlp_cuda.hpp"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

constexpr int kMaxLayers = 8;                // hidden layers + output
constexpr int kParamsPerThread = 8;          // parameters (plus the loss) each thread sums: P + 1 <= 8 T
constexpr std::size_t kMlpSmem = 48 * 1024;  // dynamic shared memory without an opt-in attribute

// Layer geometry (passed by value to the kernels).
struct Dims {
    int d = 0, layers = 0, P = 0, hidden_total = 0, max_width = 0;
    int in[kMaxLayers] = {}, out[kMaxLayers] = {}, w_off[kMaxLayers] = {}, b_off[kMaxLayers] = {},
        act_off[kMaxLayers] = {};
};

Dims make_dims(const MlpShape& s) {
    s.validate();
    if (static_cast<int>(s.hidden.size()) + 1 > kMaxLayers)
        throw std::invalid_argument("CUDA MLP: at most " + std::to_string(kMaxLayers - 1) + " hidden layers, got " +
                                    std::to_string(s.hidden.size()));
    Dims D;
    D.d = static_cast<int>(s.d);
    D.layers = static_cast<int>(s.hidden.size()) + 1;
    int nin = D.d, off = 0, act = 0;
    D.max_width = D.d;
    for (int l = 0; l < D.layers; ++l) {
        const int nout = l + 1 < D.layers ? static_cast<int>(s.hidden[l]) : 1;
        D.in[l] = nin;
        D.out[l] = nout;
        D.w_off[l] = off;
        off += nin * nout;
        D.b_off[l] = off;
        off += nout;
        D.act_off[l] = act;
        if (l + 1 < D.layers) act += nout;
        if (nout > D.max_width) D.max_width = nout;
        nin = nout;
    }
    D.P = off;
    D.hidden_total = act;
    return D;
}

// Shared memory per tile of T events, per-event type E (double, or float in the float32
// mode): the loss terms (T doubles), then in E the parameters, inputs (d x T), activations and
// sigmoid' (hidden_total x T each) and the output deltas (T).
template <class E>
std::size_t smem_bytes(const Dims& D, int T) {
    return static_cast<std::size_t>(T) * sizeof(double) +
           (static_cast<std::size_t>(D.P) + static_cast<std::size_t>(T) * (D.d + 2 * D.hidden_total + 1)) * sizeof(E);
}

// The largest tile (threads per block) whose shared memory fits and whose threads can own
// every parameter; throws when none does.
template <class E>
int tile_threads(const Dims& D) {
    for (int T : {128, 64, 32})
        if (smem_bytes<E>(D, T) <= kMlpSmem && D.P + 1 <= kParamsPerThread * T) return T;
    throw std::invalid_argument("CUDA MLP: the network (" + std::to_string(D.P) + " parameters, " +
                                std::to_string(D.hidden_total) +
                                " hidden units) does not fit the kernel's shared memory; use backend='cpu'");
}

int pass_blocks(std::int64_t n, int T) {
    const std::int64_t tiles = (n + T - 1) / T;
    return static_cast<int>(tiles < 1 ? 1 : (tiles > kMaxBlocks ? kMaxBlocks : tiles));
}

// Per-event arithmetic in E. exp_loss: e^f of the reference loss term; in float it is inf
// beyond f = 88, as in the CPU's float32 pass (whose exp saturates there), so a float32 fit
// that overflows stops as non-finite on both backends at the same f.
__device__ __forceinline__ double exp_e(double x) { return exp(x); }
__device__ __forceinline__ float exp_e(float x) { return expf(x); }
__device__ __forceinline__ double abs_e(double x) { return fabs(x); }
__device__ __forceinline__ float abs_e(float x) { return fabsf(x); }
__device__ __forceinline__ double exp_loss(double f) { return exp(f); }
__device__ __forceinline__ float exp_loss(float f) { return f > 88.0f ? INFINITY : expf(f); }

// partial[(i * gridDim.x + blockIdx.x) * (P + 1) + p]: this block's sum over its events of
// network nets[i]'s gradient term p (p = P: the loss term). x (n, d) row-major; weights w (n)
// or nullptr for data events (weight 1); ref: reference loss w (e^f - 1), else data loss -f.
// active (B flags, or nullptr): a stopped network's blocks return at once, leaving its
// partials stale (nothing reads them: adam_kernel skips it, the final loss is masked).
// E: the per-event type (events x, parameters as staged, activations, deltas); the loss
// terms and every sum over events are double (a product of two floats is exact in double).
template <class E>
__device__ __forceinline__ void mlp_pass_body(const Dims& D, const double* params, const int* nets, const int* active,
                                              const E* x, long long n, const double* w, bool ref, bool grad,
                                              double* partial) {
    const int T = static_cast<int>(blockDim.x), t = static_cast<int>(threadIdx.x);
    const int net = nets[blockIdx.y], P = D.P;
    if (active != nullptr && !active[net]) return;  // a stopped network (uniform across the block)
    double* lt = dynamic_smem<double>();            // T loss terms
    E* sp = reinterpret_cast<E*>(lt + T);           // P parameters (rounded to E)
    E* xs = sp + P;                                 // d x T inputs
    E* act = xs + D.d * T;                          // hidden_total x T activations
    E* der = act + D.hidden_total * T;              // hidden_total x T sigmoid', then deltas
    E* q = der + D.hidden_total * T;                // T output deltas dL/df
    for (int p = t; p < P; p += T) sp[p] = static_cast<E>(params[static_cast<long long>(net) * P + p]);
    double acc[kParamsPerThread];
    for (int s = 0; s < kParamsPerThread; ++s) acc[s] = 0.0;
    __syncthreads();  // parameters staged
    const long long tiles = (n + T - 1) / T;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long e = tile * T + t;
        const bool live = e < n;
        const double we = live ? (w != nullptr ? w[e] : 1.0) : 0.0;
        const E wt = static_cast<E>(we);
        for (int k = 0; k < D.d; ++k) xs[k * T + t] = live ? x[e * D.d + k] : E(0);
        // forward, this thread's event (its own columns of xs, act, der)
        E f = 0;
        for (int l = 0; l < D.layers; ++l) {
            const E* in = l == 0 ? xs : act + D.act_off[l - 1] * T;
            const E* W = sp + D.w_off[l];
            const E* b = sp + D.b_off[l];
            for (int j = 0; j < D.out[l]; ++j) {
                E z = b[j];
                for (int k = 0; k < D.in[l]; ++k) z += W[j * D.in[l] + k] * in[k * T + t];
                if (l + 1 == D.layers) {
                    f = z;
                } else {  // sigmoid from e = exp(-|z|) <= 1, without cancellation
                    const E ez = exp_e(-abs_e(z)), r = E(1) / (E(1) + ez);
                    act[(D.act_off[l] + j) * T + t] = z >= 0 ? r : ez * r;
                    der[(D.act_off[l] + j) * T + t] = ez * r * r;
                }
            }
        }
        if (ref) {
            const E ef = exp_loss(f);
            q[t] = wt * ef;
            lt[t] = we * (static_cast<double>(ef) - 1.0);
        } else {
            q[t] = -wt;
            lt[t] = -we * static_cast<double>(f);
        }
        // backward: deltas of each hidden layer overwrite its sigmoid'
        if (grad)
            for (int l = D.layers - 1; l >= 1; --l) {
                const E* W = sp + D.w_off[l];
                for (int k = 0; k < D.in[l]; ++k) {
                    E s = 0;
                    for (int j = 0; j < D.out[l]; ++j)
                        s += W[j * D.in[l] + k] * (l + 1 == D.layers ? q[t] : der[(D.act_off[l] + j) * T + t]);
                    der[(D.act_off[l - 1] + k) * T + t] *= s;
                }
            }
        __syncthreads();  // the tile's columns are complete
        // one thread per parameter (and the loss): its terms over the tile, in event order
        for (int s = 0; s < kParamsPerThread; ++s) {
            const int p = t + s * T;
            if (p > P || (!grad && p != P)) continue;
            double sum = 0.0;
            if (p == P) {
                for (int u = 0; u < T; ++u) sum += lt[u];
            } else {
                int l = 0;
                while (l + 1 < D.layers && p >= D.w_off[l + 1]) ++l;
                const E* delta = l + 1 == D.layers ? q : der + D.act_off[l] * T;
                const E* in = l == 0 ? xs : act + D.act_off[l - 1] * T;
                if (p >= D.b_off[l]) {
                    const int j = p - D.b_off[l];
                    for (int u = 0; u < T; ++u) sum += static_cast<double>(delta[j * T + u]);
                } else {
                    const int j = (p - D.w_off[l]) / D.in[l], k = (p - D.w_off[l]) % D.in[l];
                    for (int u = 0; u < T; ++u)
                        sum += static_cast<double>(delta[j * T + u]) * static_cast<double>(in[k * T + u]);
                }
            }
            acc[s] += sum;
        }
        __syncthreads();  // every thread is done with the tile before the next overwrites it
    }
    double* out = partial + (static_cast<long long>(blockIdx.y) * gridDim.x + blockIdx.x) * (P + 1);
    for (int s = 0; s < kParamsPerThread; ++s) {
        const int p = t + s * T;
        if (p <= P) out[p] = acc[s];
    }
}

__global__ void mlp_pass_kernel(Dims D, const double* params, const int* nets, const int* active, const double* x,
                                long long n, const double* w, bool ref, bool grad, double* partial) {
    mlp_pass_body<double>(D, params, nets, active, x, n, w, ref, grad, partial);
}

// The float32 mode (MlpPrecision::float32): events in float.
__global__ void mlp_pass_f32_kernel(Dims D, const double* params, const int* nets, const int* active, const float* x,
                                    long long n, const double* w, bool ref, bool grad, double* partial) {
    mlp_pass_body<float>(D, params, nets, active, x, n, w, ref, grad, partial);
}

// One launch of the pass kernel of E's mode.
void launch_pass(dim3 grid, int T, std::size_t smem, const Dims& D, const double* params, const int* nets,
                 const int* active, const double* x, long long n, const double* w, bool ref, bool grad,
                 double* partial) {
    FASTNPLM_LAUNCH(mlp_pass_kernel, grid, T, smem, nullptr)(D, params, nets, active, x, n, w, ref, grad, partial);
    check_launch("mlp_pass_kernel");
}
void launch_pass(dim3 grid, int T, std::size_t smem, const Dims& D, const double* params, const int* nets,
                 const int* active, const float* x, long long n, const double* w, bool ref, bool grad,
                 double* partial) {
    FASTNPLM_LAUNCH(mlp_pass_f32_kernel, grid, T, smem, nullptr)(D, params, nets, active, x, n, w, ref, grad, partial);
    check_launch("mlp_pass_f32_kernel");
}

// out[i * (P + 1) + p] = sum over blocks b (in order) of ref[(i * rb + b) * (P + 1) + p], plus
// the same over data partials data[(dofs[i] + b) * (P + 1) + p] for b < dblocks[i].
__global__ void sum_partials_kernel(int width, int n_nets, const double* ref, int rb, const double* data,
                                    const int* dofs, const int* dblocks, double* out) {
    const long long total = static_cast<long long>(n_nets) * width;
    for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += static_cast<long long>(gridDim.x) * blockDim.x) {
        const int i = static_cast<int>(idx / width), p = static_cast<int>(idx % width);
        double sr = 0.0, sd = 0.0;
        for (int b = 0; b < rb; ++b) sr += ref[(static_cast<long long>(i) * rb + b) * width + p];
        for (int b = 0; b < dblocks[i]; ++b) sd += data[(static_cast<long long>(dofs[i]) + b) * width + p];
        out[idx] = sr + sd;
    }
}

// Block b: network b, lg[b * (P + 1) ..] its gradient and (at P) loss. Active networks with a
// finite loss and gradient take the update; others are flagged and stop.
__global__ void adam_kernel(int P, const double* lg, double* params, double* m, double* v, int* active, int* finite,
                            long long* epochs_done, double* history, long long n_history, MlpAdamStep a) {
    __shared__ int bad[kThreads];
    const int b = static_cast<int>(blockIdx.x), t = static_cast<int>(threadIdx.x);
    if (!active[b]) return;  // uniform across the block
    const double* g = lg + static_cast<long long>(b) * (P + 1);
    int nb = 0;
    for (int p = t; p <= P; p += kThreads) nb |= !(g[p] - g[p] == 0.0);  // NaN or inf
    bad[t] = nb;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (t < s) bad[t] |= bad[t + s];
        __syncthreads();
    }
    const bool stop = bad[0] != 0;
    __syncthreads();  // everyone has read bad[0] before thread 0 may change the flags
    if (stop) {
        if (t == 0) {
            finite[b] = 0;
            active[b] = 0;
        }
        return;
    }
    if (t == 0) {
        if (a.record >= 0) history[b * n_history + a.record] = g[P];
        epochs_done[b] = a.epoch + 1;
    }
    double* pb = params + static_cast<long long>(b) * P;
    double* mb = m + static_cast<long long>(b) * P;
    double* vb = v + static_cast<long long>(b) * P;
    for (int j = t; j < P; j += kThreads) {
        mb[j] += a.c1 * (g[j] - mb[j]);
        vb[j] = vb[j] * a.beta2 + a.c2 * g[j] * g[j];
        const double denom = sqrt(vb[j]) / a.bc2_sqrt + a.eps;
        const double pj = pb[j] - a.step_size * (mb[j] / denom);
        pb[j] = fmin(a.clip, fmax(-a.clip, pj));
    }
}

unsigned flat_grid(long long work) {
    const long long b = (work + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > 1024 ? 1024 : b));
}

// Events, weights and scratch of one training (or one loss + gradient evaluation) on the device;
// the events in E (double, or float in the float32 mode: rounded once, at the upload), the
// weights in double.
template <class E>
class DevicePass {
public:
    DevicePass(const MlpShape& shape, MatrixView reference, const double* w, const std::vector<MatrixView>& data)
        : D_(make_dims(shape)), T_(tile_threads<E>(D_)), B_(static_cast<int>(data.size())) {
        if (B_ < 1) throw std::invalid_argument("CUDA MLP: no networks (data list is empty)");
        if (w == nullptr) throw std::invalid_argument("CUDA MLP: reference weights are missing");
        check_events(reference, "reference");
        upload_rows(reference, ref_);
        nr_ = reference.rows;
        w_.upload(w, static_cast<std::size_t>(nr_));
        rb_ = pass_blocks(nr_, T_);
        dat_.resize(B_);
        std::vector<int> dofs(B_), dblocks(B_);
        int off = 0;
        for (int b = 0; b < B_; ++b) {
            check_events(data[b], "data set " + std::to_string(b));
            upload_rows(data[b], dat_[b]);
            nd_.push_back(data[b].rows);
            dblocks[b] = pass_blocks(data[b].rows, T_);
            dofs[b] = off;
            off += dblocks[b];
        }
        dblocks_host_ = dblocks;
        dofs_host_ = dofs;
        dofs_.upload(dofs.data(), dofs.size());
        dblocks_.upload(dblocks.data(), dblocks.size());
        ref_part_.resize(static_cast<std::size_t>(B_) * rb_ * (D_.P + 1));
        dat_part_.resize(static_cast<std::size_t>(off) * (D_.P + 1));
        lg_.resize(static_cast<std::size_t>(B_) * (D_.P + 1));
        std::vector<int> all(B_);
        for (int b = 0; b < B_; ++b) all[b] = b;
        nets_.upload(all.data(), all.size());
    }

    int P() const { return D_.P; }
    int B() const { return B_; }
    double* lg() { return lg_.data(); }

    // lg (B x (P + 1)) = gradient and loss of every network at device params (B x P); with
    // active (device flags), of the active ones only (the others' rows are stale).
    void run(const double* params, bool grad, const int* active = nullptr) {
        const std::size_t smem = smem_bytes<E>(D_, T_);
        launch_pass(dim3(rb_, B_), T_, smem, D_, params, nets_.data(), active, ref_.data(), nr_, w_.data(), true, grad,
                    ref_part_.data());
        for (int b = 0; b < B_; ++b)
            launch_pass(dim3(dblocks_host_[b], 1), T_, smem, D_, params, nets_.data() + b, active, dat_[b].data(),
                        nd_[b], nullptr, false, grad,
                        dat_part_.data() + static_cast<std::size_t>(dofs_host_[b]) * (D_.P + 1));
        FASTNPLM_LAUNCH(sum_partials_kernel, flat_grid(static_cast<long long>(B_) * (D_.P + 1)), kThreads, 0, nullptr)(
            D_.P + 1, B_, ref_part_.data(), rb_, dat_part_.data(), dofs_.data(), dblocks_.data(), lg_.data());
        check_launch("sum_partials_kernel");
    }

private:
    void check_events(MatrixView x, const std::string& name) const {
        if (x.rows < 1) throw std::invalid_argument("CUDA MLP: " + name + " is empty (0 events)");
        if (x.cols != D_.d)
            throw std::invalid_argument("CUDA MLP: " + name + " has " + std::to_string(x.cols) +
                                        " features but the network takes " + std::to_string(D_.d));
    }
    static void upload_rows(MatrixView x, DeviceArray<E>& dst) {
        std::vector<E> packed(static_cast<std::size_t>(x.rows * x.cols));
        for (std::int64_t i = 0; i < x.rows; ++i)
            for (std::int64_t k = 0; k < x.cols; ++k) packed[i * x.cols + k] = static_cast<E>(x.row(i)[k]);
        dst.upload(packed.data(), packed.size());
    }

    Dims D_;
    int T_, B_, rb_ = 0;
    std::int64_t nr_ = 0;
    std::vector<std::int64_t> nd_;
    std::vector<int> dblocks_host_, dofs_host_;
    DeviceArray<E> ref_;
    std::vector<DeviceArray<E>> dat_;
    DeviceArray<double> w_, ref_part_, dat_part_, lg_;
    DeviceArray<int> nets_, dofs_, dblocks_;
};

template <class E>
void pass_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                    const std::vector<MatrixView>& data, const double* params, double* loss, double* grad) {
    DevicePass<E> pass(shape, reference, reference_weights, data);
    const int P = pass.P(), B = pass.B();
    DeviceArray<double> dp;
    dp.upload(params, static_cast<std::size_t>(B) * P);
    pass.run(dp.data(), grad != nullptr);
    std::vector<double> lg(static_cast<std::size_t>(B) * (P + 1));
    check(cudaMemcpy(lg.data(), pass.lg(), lg.size() * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
    for (int b = 0; b < B; ++b) {
        loss[b] = lg[static_cast<std::size_t>(b) * (P + 1) + P];
        if (grad != nullptr)
            for (int j = 0; j < P; ++j)
                grad[static_cast<std::size_t>(b) * P + j] = lg[static_cast<std::size_t>(b) * (P + 1) + j];
    }
}

// The epoch primitive on the device: parameters, moments, flags, epochs_done and the loss
// history live in device memory; an epoch is 2 + B pass launches and one adam_kernel launch,
// no copy. all_stopped() (a B-flag copy and so a synchronisation) is asked by the loop every
// kStopCheck epochs; a stopped network's pass blocks return at once.
template <class E>
class DeviceEpochs final : public MlpEpochs {
public:
    static constexpr std::int64_t kStopCheck = 64;

    DeviceEpochs(const MlpShape& shape, MatrixView reference, const double* w, const std::vector<MatrixView>& data,
                 const double* params, std::int64_t n_history)
        : pass_(shape, reference, w, data), P_(pass_.P()), B_(pass_.B()), nh_(n_history) {
        const std::size_t bp = static_cast<std::size_t>(B_) * P_;
        params_.upload(params, bp);
        m_.resize(bp);
        m_.zero();
        v_.resize(bp);
        v_.zero();
        const std::vector<double> nan(static_cast<std::size_t>(B_ * nh_), std::numeric_limits<double>::quiet_NaN());
        history_.upload(nan.data(), nan.size());
        const std::vector<int> ones(B_, 1);
        const std::vector<long long> zeros(B_, 0);
        active_.upload(ones.data(), ones.size());
        finite_.upload(ones.data(), ones.size());
        done_.upload(zeros.data(), zeros.size());
    }

    void epoch(const MlpAdamStep& a) override {
        pass_.run(params_.data(), true, active_.data());
        FASTNPLM_LAUNCH(adam_kernel, B_, kThreads, 0, nullptr)(P_, pass_.lg(), params_.data(), m_.data(), v_.data(),
                                                               active_.data(), finite_.data(), done_.data(),
                                                               history_.data(), static_cast<long long>(nh_), a);
        check_launch("adam_kernel");
    }

    std::int64_t stop_check_every() const override { return kStopCheck; }

    bool all_stopped() override {
        std::vector<int> act(B_);
        active_.download(act.data(), act.size());
        for (int x : act)
            if (x) return false;
        return true;
    }

    void final_loss(double* loss) override {
        pass_.run(params_.data(), false, active_.data());
        std::vector<double> lg(static_cast<std::size_t>(B_) * (P_ + 1));
        std::vector<int> act(B_);
        check(cudaMemcpy(lg.data(), pass_.lg(), lg.size() * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
        active_.download(act.data(), act.size());
        for (int b = 0; b < B_; ++b)
            loss[b] =
                act[b] ? lg[static_cast<std::size_t>(b) * (P_ + 1) + P_] : std::numeric_limits<double>::quiet_NaN();
    }

    void results(double* params, std::uint8_t* finite, std::int64_t* epochs_done, double* history) override {
        std::vector<int> fin(B_);
        std::vector<long long> ed(B_);
        params_.download(params, static_cast<std::size_t>(B_) * P_);
        finite_.download(fin.data(), fin.size());
        done_.download(ed.data(), ed.size());
        history_.download(history, static_cast<std::size_t>(B_ * nh_));
        for (int b = 0; b < B_; ++b) {
            finite[b] = static_cast<std::uint8_t>(fin[b] != 0);
            epochs_done[b] = ed[b];
        }
    }

    void set_moments(const double* m, const double* v) override {
        m_.upload(m, static_cast<std::size_t>(B_) * P_);
        v_.upload(v, static_cast<std::size_t>(B_) * P_);
    }
    void moments(double* m, double* v) override {
        m_.download(m, static_cast<std::size_t>(B_) * P_);
        v_.download(v, static_cast<std::size_t>(B_) * P_);
    }

private:
    DevicePass<E> pass_;
    int P_, B_;
    std::int64_t nh_;
    DeviceArray<double> params_, m_, v_, history_;
    DeviceArray<int> active_, finite_;
    DeviceArray<long long> done_;
};

// The CUDA MlpOps: loss_grad for the pass alone, DeviceEpochs for training.
class CudaMlpOps final : public MlpOps {
public:
    void loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   MlpPrecision precision) const override {
        if (precision == MlpPrecision::float32)
            pass_loss_grad<float>(shape, reference, reference_weights, data, params, loss, grad);
        else
            pass_loss_grad<double>(shape, reference, reference_weights, data, params, loss, grad);
    }

    std::unique_ptr<MlpEpochs> epochs(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                                      const std::vector<MatrixView>& data, double* params, std::int64_t n_history,
                                      MlpPrecision precision) const override {
        if (precision == MlpPrecision::float32)
            return std::make_unique<DeviceEpochs<float>>(shape, reference, reference_weights, data, params, n_history);
        return std::make_unique<DeviceEpochs<double>>(shape, reference, reference_weights, data, params, n_history);
    }
};

}  // namespace

const std::vector<std::string>& mlp_kernel_names() {
    static const std::vector<std::string> names = {"mlp_pass_kernel", "mlp_pass_f32_kernel", "sum_partials_kernel",
                                                   "adam_kernel"};
    return names;
}

std::unique_ptr<MlpOps> make_mlp_ops() { return std::make_unique<CudaMlpOps>(); }

}  // namespace fastnplm::FASTNPLM_CUDA_NS

#if !defined(FASTNPLM_CUDA_EMU)
// The MlpOps of a CUDA build, for make_mlp_ops.
namespace fastnplm {

std::unique_ptr<MlpOps> detail::make_cuda_mlp_ops() { return cuda::make_mlp_ops(); }

}  // namespace fastnplm
#endif
