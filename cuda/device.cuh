#pragma once
// RAII device memory and the launch shapes shared by the kernel files.
#include <cstddef>
#include <cstdint>
#include <utility>

#include "compat.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {

constexpr int kThreads = 128;        ///< threads per block of every kernel (the tree reductions assume it)
constexpr int kRows = 4;             ///< events per row tile of the Gaussian-kernel passes
constexpr int kCols = 4;             ///< right-hand sides per chunk in kernel_mm_expm1_sum
constexpr int kMaxBlocks = 256;      ///< blocks of the row passes (fewer for small n); a function of n only
constexpr int kDenseBlock = 32;      ///< block size of the blocked Cholesky
constexpr int kFeatureChunk = 2048;  ///< events per chunk of the feature-Gram pass (chunk x m doubles of scratch)
/// Dynamic shared memory of a row pass: the staged row tile, plus the kernel panel when it fits.
constexpr std::size_t kSmemBudget = 32 * 1024;

/// Owning device array of T: cudaMalloc'd, freed in the destructor, grown (never shrunk) by resize.
template <class T>
class DeviceArray {
public:
    DeviceArray() = default;
    explicit DeviceArray(std::size_t n) { resize(n); }
    ~DeviceArray() { release(); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    DeviceArray(DeviceArray&& o) noexcept
        : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), cap_(std::exchange(o.cap_, 0)) {}
    DeviceArray& operator=(DeviceArray&& o) noexcept {
        if (this != &o) {
            release();
            p_ = std::exchange(o.p_, nullptr);
            n_ = std::exchange(o.n_, 0);
            cap_ = std::exchange(o.cap_, 0);
        }
        return *this;
    }

    /// Makes room for n elements (contents are not kept when it reallocates).
    void resize(std::size_t n) {
        if (n > cap_) {
            release();
            void* p = nullptr;
            check(cudaMalloc(&p, (n ? n : 1) * sizeof(T)), "cudaMalloc");
            p_ = static_cast<T*>(p);
            cap_ = n;
        }
        n_ = n;
    }
    /// Copies n host elements in (resizing first).
    void upload(const T* host, std::size_t n) {
        resize(n);
        check(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy host to device");
    }
    /// Copies the first n elements out.
    void download(T* host, std::size_t n) const {
        check(cudaMemcpy(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
    }
    /// Zeroes the first n elements (all when n is omitted).
    void zero(std::size_t n = static_cast<std::size_t>(-1)) {
        check(cudaMemset(p_, 0, (n < n_ ? n : n_) * sizeof(T)), "cudaMemset");
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    std::size_t size() const { return n_; }

private:
    void release() noexcept {
        if (p_) cudaFree(p_);  // error ignored: nothing useful to do in a destructor
        p_ = nullptr;
        n_ = cap_ = 0;
    }
    T* p_ = nullptr;
    std::size_t n_ = 0, cap_ = 0;
};

/// Events on the device, row-major (n, d).
struct DevicePoints {
    const double* x;
    std::int64_t n;
    int d;
};

/// Centers on the device, transposed to (d, m) so that threads over centers read coalesced.
struct DeviceCenters {
    const double* ct;
    std::int64_t m;
    int d;
};

/// Device scratch reused across calls (grown on demand).
struct Workspace {
    DeviceArray<double> partial, panel, out, vec_a, vec_b, vec_c;
    DeviceArray<double> part_a, part_b, out_b, out_c;  // features.cu: block partials; CudaOps: extra outputs
    DeviceArray<int> info;
};

// ---- Gaussian-kernel passes (gauss.cu); pointers are device pointers ----

/// Blocks of the row passes for n events: min(kMaxBlocks, row tiles), a function of n only.
int row_blocks(std::int64_t n);

/// out (width) = the sum over blocks b, in block order, of partial[b * width + j] (device pointers).
void sum_blocks(const double* partial, int blocks, long long width, double* out);

/// out (n x m, row-major) = K(x, c).
void gauss_block(DevicePoints x, DeviceCenters c, double gamma, double* out);
/// out (n) = K(x, c) v.
void gauss_mv(DevicePoints x, DeviceCenters c, double gamma, const double* v, double* out);
/// out (m) = K(x, c)^T u.
void gauss_tmv(DevicePoints x, DeviceCenters c, double gamma, const double* u, double* out, Workspace& ws);
/// out (m) = K^T (w ∘ K v), one kernel evaluation per pair.
void gauss_fused(DevicePoints x, DeviceCenters c, double gamma, const double* v, const double* w, double* out,
                 Workspace& ws);
/// out (b) = sum_i w_i expm1((K V)_iq), V (m, b) row-major.
void gauss_mm_expm1(DevicePoints x, DeviceCenters c, double gamma, const double* v, std::int64_t b, const double* w,
                    double* out, Workspace& ws);
/// With B = K(x, c) T^-1 (t: m x m upper factor, column-major): out_w (m x m, lower triangle
/// filled; the caller mirrors it) = B^T diag(w) B, out_g (m) = B^T u.
void gauss_feature_gram(DevicePoints x, DeviceCenters c, double gamma, const double* t, const double* w,
                        const double* u, double* out_w, double* out_g, Workspace& ws);

// ---- CG vector operations (vector.cu), device pointers ----

/// y += a x.
void vec_axpy(std::int64_t n, double a, const double* x, double* y);
/// y = x + b y.
void vec_xpby(std::int64_t n, const double* x, double b, double* y);
/// *out = x . y in a fixed reduction tree (a function of n only).
void vec_dot(std::int64_t n, const double* x, const double* y, double* out, Workspace& ws);

// ---- dense n x n work (dense.cu): column-major, upper triangle, device pointers ----

/// A = U^T U in place (upper); returns 0 or the 1-based column of the first non-positive pivot.
int dense_cholesky_upper(double* a, int n, Workspace& ws);
/// U <- U U^T (upper triangle; the strict lower triangle is left alone).
void dense_lauum_upper(double* u, int n, Workspace& ws);
/// b <- U^-1 b (trans false) or U^-T b (trans true).
void dense_trsv_upper(const double* u, int n, bool trans, double* b);
/// x <- U x or U^T x.
void dense_trmv_upper(const double* u, int n, bool trans, double* x, Workspace& ws);
/// y = A x for a symmetric A (both triangles stored); y_i summed over j in index order.
void dense_symv(const double* a, int n, const double* x, double* y);
/// U(i, j) *= s_j for i <= j.
void dense_scale_columns_upper(double* u, int n, const double* s);
/// A(i, j) /= div for i <= j, then A(j, j) += shift.
void dense_divide_shift_upper(double* a, int n, double div, double shift);

}  // namespace fastnplm::FASTNPLM_CUDA_NS
