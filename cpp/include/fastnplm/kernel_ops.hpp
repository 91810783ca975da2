#pragma once
// The backend interface for the Gaussian-kernel primitives. Algorithms (the Newton/CG
// solver) are written once against it; each backend implements only these primitives.
//
// k(x, c) = exp(-gamma * ||x - c||^2), gamma = 1 / (2 sigma^2).
// Every product that sums over the rows of x does so in a fixed order that depends
// on the number of rows only, so results do not depend on the number of threads.
//
// Two kinds of arguments: host pointers (inputs copied in and results copied out by a device
// backend), and Buffers, arrays that live in the backend's own memory, for the solver's
// per-iteration work: on CUDA its CG runs on Buffers, so only dot products cross to the host.
#include <cstdint>
#include <memory>

#include "fastnplm/device.hpp"
#include "fastnplm/view.hpp"

namespace fastnplm {

/// An array of doubles in a backend's memory (host memory for the CPU backend, device memory for
/// CUDA), made by KernelOps::alloc and passed only to that backend's methods. Move-only; freed with
/// the handle. data() is a device pointer on CUDA: the host reads it through KernelOps::download.
class Buffer {
public:
    Buffer() = default;
    /// Takes ownership of size doubles at data, freed by release(data).
    Buffer(double* data, std::int64_t size, void (*release)(double*)) : p_(data, release), n_(size) {}
    double* data() { return p_.get(); }
    const double* data() const { return p_.get(); }
    std::int64_t size() const { return n_; }

private:
    std::unique_ptr<double, void (*)(double*)> p_{nullptr, nullptr};
    std::int64_t n_ = 0;
};

class KernelOps {
public:
    virtual ~KernelOps() = default;

    /// out[i * ld + j] = k(x_i, c_j): x is (n, d), c is (m, d), out is (n, m) with leading dim ld >= m.
    virtual void kernel_block(MatrixView x, MatrixView c, double gamma, double* out, std::int64_t ld) const = 0;

    /// out = K(x, c) v: v has m entries, out has n entries.
    virtual void kernel_mv(MatrixView x, MatrixView c, double gamma, const double* v, double* out) const = 0;

    /// out_q = sum_i w_i (exp((K(x, c) V)_iq) - 1) for b columns of V (m, b) row-major: the
    /// reference term of t for b fits at once, without storing the (n, b) products.
    virtual void kernel_mm_expm1_sum(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b,
                                     const double* w, double* out) const = 0;

    /// Projected kernel features in one pass: with F = K(x, c) G (G: m x r row-major), out_f (n x r,
    /// or nullptr) = F, out_w (r x r, or nullptr) = F^T diag(w) F, out_g (r, or nullptr) = F^T u.
    virtual void feature_project(MatrixView x, MatrixView c, double gamma, const double* g, std::int64_t r,
                                 const double* w, const double* u, double* out_f, double* out_w,
                                 double* out_g) const = 0;

    /// out (r x r) = F^T diag(w) F for stored feature rows F (n, r).
    virtual void features_gram(MatrixView f, const double* w, double* out) const = 0;

    /// out_q = sum_i w_i (exp((F V)_iq) - 1) for stored feature rows F (n, r) and b columns of V (r, b)
    /// row-major: the reference term of t for b fits in a precomputed feature basis.
    virtual void features_expm1_sum(MatrixView f, const double* v, std::int64_t b, const double* w,
                                    double* out) const = 0;

    /// out (m x b, row-major) = K(x, c)^T diag(w) K(x, c) V for b columns of V (m x b, row-major), one
    /// kernel evaluation per pair for all columns: the reference's Hessian products of a block of toys.
    /// Each column's result is independent of the other columns. The default runs kernel_fused per column.
    virtual void kernel_gram_mm(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b,
                                const double* w, double* out) const;

    /// out = K(x, c)^T u: u has n entries, out has m entries (overwritten).
    virtual void kernel_tmv(MatrixView x, MatrixView c, double gamma, const double* u, double* out) const = 0;

    /// out = K(x, c)^T (w ∘ (K(x, c) v)), one kernel evaluation per pair: v, out have m entries, w has n.
    virtual void kernel_fused(MatrixView x, MatrixView c, double gamma, const double* v, const double* w,
                              double* out) const = 0;

    /// Nystrom-feature products in one pass: with B = K(x, c) T^{-1} (t_upper: the m x m upper
    /// Cholesky factor of K_MM, column-major), out_w (m x m) = B^T diag(w) B and out_g (m) = B^T u;
    /// w, u have n entries.
    virtual void feature_gram(MatrixView x, MatrixView c, double gamma, const double* t_upper, const double* w,
                              const double* u, double* out_w, double* out_g) const = 0;

    // ---- Buffers: the Newton/CG solver's state in the backend's memory ----
    // Matrices are n x n column-major (leading dimension n); "upper" means the upper triangle
    // (LAPACK's uplo = 'U'; the strict lower triangle is neither read nor written). Sizes are
    // checked (std::invalid_argument). On the CPU these are the plain loops of the solver.

    /// A zero-filled buffer of n doubles.
    virtual Buffer alloc(std::int64_t n) const = 0;
    /// dst <- host[0, dst.size()).
    virtual void upload(const double* host, Buffer& dst) const = 0;
    /// host[0, src.size()) <- src.
    virtual void download(const Buffer& src, double* host) const = 0;
    /// dst <- src (equal sizes).
    virtual void copy(const Buffer& src, Buffer& dst) const = 0;
    /// y += a x.
    virtual void axpy(double a, const Buffer& x, Buffer& y) const = 0;
    /// y = x + b y.
    virtual void xpby(const Buffer& x, double b, Buffer& y) const = 0;
    /// x . y (CPU: summed in index order; CUDA: a fixed reduction tree, a function of the size).
    virtual double dot(const Buffer& x, const Buffer& y) const = 0;

    /// kernel_fused on Buffers: out (m) = K(x, c)^T (w ∘ (K(x, c) v)), v (m), w (x.rows).
    virtual void kernel_fused(MatrixView x, MatrixView c, double gamma, const Buffer& v, const Buffer& w,
                              Buffer& out) const = 0;

    /// features_expm1_sum on stored feature rows resident in the backend's memory: f holds F
    /// (f.size() / cols rows, cols columns, row-major), w one weight per row; v (cols, b) and out
    /// (b) are host arrays. The calibration's batched toys read the same F for every batch, so a
    /// device backend keeps it there instead of copying it in per call.
    virtual void features_expm1_sum(const Buffer& f, std::int64_t cols, const double* v, std::int64_t b,
                                    const Buffer& w, double* out) const = 0;

    /// y = A x for a symmetric n x n A with both triangles stored (n = x.size()): y_i summed over
    /// A(i, 0..n-1) in index order.
    virtual void symv(const Buffer& a, const Buffer& x, Buffer& y) const = 0;
    /// b <- U^-1 b (trans false) or U^-T b (trans true); U upper, n = b.size().
    virtual void trsv_upper(const Buffer& u, bool trans, Buffer& b) const = 0;
    /// x <- U x or U^T x; U upper, n = x.size().
    virtual void trmv_upper(const Buffer& u, bool trans, Buffer& x) const = 0;
    /// U(i, j) *= s_j for i <= j (column scaling of the upper triangle), n = s.size().
    virtual void scale_columns_upper(Buffer& u, const Buffer& s) const = 0;
    /// A(i, j) /= div for i <= j, then A(j, j) += shift.
    virtual void divide_shift_upper(Buffer& a, int n, double div, double shift) const = 0;

    /// The preconditioner's O(M^3) work, in place. Cholesky a = U^T U (upper); returns 0, or
    /// LAPACK's info (1-based failing column). CPU: LAPACK; CUDA: dense.cu.
    virtual int cholesky_upper(Buffer& a, int n) const = 0;
    /// U <- U U^T in place for the upper-triangular U.
    virtual void lauum_upper(Buffer& u, int n) const = 0;

protected:
    /// The backends' size checks: throws std::invalid_argument(what + ": buffer sizes do not match") unless ok.
    static void require_sizes(bool ok, const char* what);
};

/// The backend of `device` (resolve_device: throws std::runtime_error for cuda without one).
/// cpu: multithreaded and vectorised, on `threads` threads (<= 0: all cores). cuda: device 0, the
/// host-pointer interface with events and centers copied to the device once and cached, keyed by
/// (pointer, shape, stride): the object assumes that an array it has seen is not modified (or
/// freed and reused) while it lives, so use one object per fit; not safe to call from several
/// host threads at once; `threads` unused.
std::unique_ptr<KernelOps> make_ops(Device device, int threads = 0);

/// Number of threads the CPU backend uses when asked for `threads` (<= 0: all cores).
int resolve_threads(int threads);

}  // namespace fastnplm
