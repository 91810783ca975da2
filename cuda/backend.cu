// CudaOps: the KernelOps interface on the device kernels of gauss.cu, with host pointers.
//
// Inputs and outputs are host arrays (the interface the solver is written against). Event
// and center matrices are copied to the device once per CudaOps object and cached: an entry
// is keyed by (host pointer, rows, cols, stride, layout) and is never refreshed, so the
// object assumes that what it has seen is not modified or freed-and-reused while it lives
// (fit_kernel_nplm's inputs are const for the whole fit; callers use one object per fit).
// The cache holds at most kCacheEntries matrices and drops the least recently used.
// Vectors (v, w, u) of the host-pointer methods change between calls and are copied every call
// (8 bytes per event).
//
// Buffers are device arrays (cudaMalloc'd, freed by the handle): the solver's factors, Hessian
// weights and CG vectors stay on the device, and the Buffer methods launch kernels on them
// without copies; dot() brings back one double.
//
// The feature-basis primitives (feature_project, features_gram, features_expm1_sum: the
// batched-toy path of the calibration) are the kernels of features.cu.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "backends.hpp"
#include "device.cuh"
#include "fastnplm/cuda.hpp"
#include "features_cuda.hpp"
#include "mlp_cuda.hpp"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

constexpr std::size_t kCacheEntries = 6;

void check_shapes(MatrixView x, MatrixView c) {
    if (x.cols != c.cols)
        throw std::invalid_argument("kernel: points have " + std::to_string(x.cols) + " features but centers have " +
                                    std::to_string(c.cols));
    if (c.rows < 1 || c.cols < 1) throw std::invalid_argument("kernel: need at least one center and one feature");
    if (x.rows < 0) throw std::invalid_argument("kernel: negative number of points");
}

class CudaOps final : public KernelOps {
public:
    explicit CudaOps(int device) {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
            throw std::runtime_error("CUDA backend: no CUDA device is available (no driver or no GPU)");
        if (device < 0 || device >= count)
            throw std::invalid_argument("CUDA backend: device " + std::to_string(device) + " does not exist (" +
                                        std::to_string(count) + " device(s))");
        check(cudaSetDevice(device), "cudaSetDevice");
    }

    void kernel_block(MatrixView x, MatrixView c, double gamma, double* out, std::int64_t ld) const override {
        check_shapes(x, c);
        if (ld < c.rows)
            throw std::invalid_argument("kernel_block: leading dimension smaller than the number of centers");
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        const std::size_t nm = static_cast<std::size_t>(x.rows) * c.rows;
        ws_.out.resize(nm);
        gauss_block(px, pc, gamma, ws_.out.data());
        if (ld == c.rows) {
            ws_.out.download(out, nm);
        } else {
            std::vector<double> tmp(nm);
            ws_.out.download(tmp.data(), nm);
            for (std::int64_t i = 0; i < x.rows; ++i) std::copy_n(tmp.data() + i * c.rows, c.rows, out + i * ld);
        }
    }

    void kernel_mv(MatrixView x, MatrixView c, double gamma, const double* v, double* out) const override {
        check_shapes(x, c);
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        ws_.vec_a.upload(v, c.rows);
        ws_.out.resize(x.rows);
        gauss_mv(px, pc, gamma, ws_.vec_a.data(), ws_.out.data());
        ws_.out.download(out, x.rows);
    }

    void kernel_mm_expm1_sum(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b, const double* w,
                             double* out) const override {
        check_shapes(x, c);
        if (b < 1) throw std::invalid_argument("kernel_mm_expm1_sum: need at least one right-hand side");
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        ws_.vec_a.upload(v, c.rows * b);
        ws_.vec_b.upload(w, x.rows);
        ws_.out.resize(b);
        gauss_mm_expm1(px, pc, gamma, ws_.vec_a.data(), b, ws_.vec_b.data(), ws_.out.data(), ws_);
        ws_.out.download(out, b);
    }

    void kernel_tmv(MatrixView x, MatrixView c, double gamma, const double* u, double* out) const override {
        check_shapes(x, c);
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        ws_.vec_b.upload(u, x.rows);
        ws_.out.resize(c.rows);
        gauss_tmv(px, pc, gamma, ws_.vec_b.data(), ws_.out.data(), ws_);
        ws_.out.download(out, c.rows);
    }

    void kernel_fused(MatrixView x, MatrixView c, double gamma, const double* v, const double* w,
                      double* out) const override {
        check_shapes(x, c);
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        ws_.vec_a.upload(v, c.rows);
        ws_.vec_b.upload(w, x.rows);
        ws_.out.resize(c.rows);
        gauss_fused(px, pc, gamma, ws_.vec_a.data(), ws_.vec_b.data(), ws_.out.data(), ws_);
        ws_.out.download(out, c.rows);
    }

    void feature_project(MatrixView x, MatrixView c, double gamma, const double* g, std::int64_t r, const double* w,
                         const double* u, double* out_f, double* out_w, double* out_g) const override {
        check_shapes(x, c);
        if (r < 1) throw std::invalid_argument("feature_project: need at least one projected direction");
        if ((out_w != nullptr && w == nullptr) || (out_g != nullptr && u == nullptr))
            throw std::invalid_argument("feature_project: the Gram matrix needs w and F^T u needs u");
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        const std::size_t n = static_cast<std::size_t>(x.rows), rr = static_cast<std::size_t>(r);
        ws_.vec_a.upload(g, static_cast<std::size_t>(c.rows) * rr);
        if (w != nullptr) ws_.vec_b.upload(w, n);
        if (u != nullptr) ws_.vec_c.upload(u, n);
        if (out_f != nullptr) ws_.out.resize(n * rr);
        if (out_w != nullptr) ws_.out_b.resize(rr * rr);
        if (out_g != nullptr) ws_.out_c.resize(rr);
        fastnplm::FASTNPLM_CUDA_NS::feature_project(px, pc, gamma, ws_.vec_a.data(), r, w ? ws_.vec_b.data() : nullptr,
                                                    u ? ws_.vec_c.data() : nullptr, out_f ? ws_.out.data() : nullptr,
                                                    out_w ? ws_.out_b.data() : nullptr,
                                                    out_g ? ws_.out_c.data() : nullptr, ws_);
        if (out_f != nullptr) ws_.out.download(out_f, n * rr);
        if (out_w != nullptr) ws_.out_b.download(out_w, rr * rr);
        if (out_g != nullptr) ws_.out_c.download(out_g, rr);
    }

    void features_gram(MatrixView f, const double* w, double* out) const override {
        const std::size_t r = static_cast<std::size_t>(f.cols);
        const double* df = cached(f, false);
        ws_.vec_b.upload(w, static_cast<std::size_t>(f.rows));
        ws_.out_b.resize(r * r);
        fastnplm::FASTNPLM_CUDA_NS::features_gram(df, f.rows, f.cols, ws_.vec_b.data(), ws_.out_b.data(), ws_);
        ws_.out_b.download(out, r * r);
    }

    void features_expm1_sum(MatrixView f, const double* v, std::int64_t b, const double* w,
                            double* out) const override {
        if (b < 1) throw std::invalid_argument("features_expm1_sum: need at least one right-hand side");
        const double* df = cached(f, false);
        ws_.vec_a.upload(v, static_cast<std::size_t>(f.cols) * b);
        ws_.vec_b.upload(w, static_cast<std::size_t>(f.rows));
        ws_.out_b.resize(b);
        fastnplm::FASTNPLM_CUDA_NS::features_expm1_sum(df, f.rows, f.cols, ws_.vec_a.data(), b, ws_.vec_b.data(),
                                                       ws_.out_b.data(), ws_);
        ws_.out_b.download(out, b);
    }

    void feature_gram(MatrixView x, MatrixView c, double gamma, const double* t, const double* w, const double* u,
                      double* out_w, double* out_g) const override {
        check_shapes(x, c);
        const DevicePoints px = points(x);
        const DeviceCenters pc = centers(c);
        const std::size_t m = static_cast<std::size_t>(c.rows);
        ws_.vec_a.upload(t, m * m);
        ws_.vec_b.upload(w, x.rows);
        ws_.vec_c.upload(u, x.rows);
        ws_.out.resize(m * m + m);
        gauss_feature_gram(px, pc, gamma, ws_.vec_a.data(), ws_.vec_b.data(), ws_.vec_c.data(), ws_.out.data(),
                           ws_.out.data() + m * m, ws_);
        std::vector<double> host(m * m + m);
        ws_.out.download(host.data(), host.size());
        std::copy_n(host.data() + m * m, m, out_g);
        for (std::size_t a = 0; a < m; ++a)  // lower triangle accumulated, mirrored: exactly symmetric
            for (std::size_t b = 0; b <= a; ++b) out_w[a * m + b] = out_w[b * m + a] = host[a * m + b];
    }

    // ---- Buffers: device arrays; vector.cu and dense.cu on them, in place ----
    Buffer alloc(std::int64_t n) const override {
        require_sizes(n >= 0, "alloc");
        void* p = nullptr;
        check(cudaMalloc(&p, static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(double)), "cudaMalloc");
        Buffer b(static_cast<double*>(p), n, [](double* q) { cudaFree(q); });  // error ignored, as ~DeviceArray
        check(cudaMemset(p, 0, static_cast<std::size_t>(n) * sizeof(double)), "cudaMemset");
        return b;
    }
    void upload(const double* host, Buffer& dst) const override {
        check(cudaMemcpy(dst.data(), host, bytes(dst), cudaMemcpyHostToDevice), "cudaMemcpy host to device");
    }
    void download(const Buffer& src, double* host) const override {
        check(cudaMemcpy(host, src.data(), bytes(src), cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
    }
    void copy(const Buffer& src, Buffer& dst) const override {
        require_sizes(src.size() == dst.size(), "copy");
        check(cudaMemcpy(dst.data(), src.data(), bytes(src), cudaMemcpyDeviceToDevice), "cudaMemcpy device to device");
    }
    void axpy(double a, const Buffer& x, Buffer& y) const override {
        require_sizes(x.size() == y.size(), "axpy");
        vec_axpy(y.size(), a, x.data(), y.data());
    }
    void xpby(const Buffer& x, double b, Buffer& y) const override {
        require_sizes(x.size() == y.size(), "xpby");
        vec_xpby(y.size(), x.data(), b, y.data());
    }
    double dot(const Buffer& x, const Buffer& y) const override {
        require_sizes(x.size() == y.size(), "dot");
        dot_out_.resize(1);
        vec_dot(x.size(), x.data(), y.data(), dot_out_.data(), ws_);
        double r = 0.0;
        dot_out_.download(&r, 1);
        return r;
    }
    void kernel_fused(MatrixView x, MatrixView c, double gamma, const Buffer& v, const Buffer& w,
                      Buffer& out) const override {
        check_shapes(x, c);
        require_sizes(v.size() == c.rows && out.size() == c.rows && w.size() == x.rows, "kernel_fused");
        gauss_fused(points(x), centers(c), gamma, v.data(), w.data(), out.data(), ws_);
    }
    void features_expm1_sum(const Buffer& f, std::int64_t cols, const double* v, std::int64_t b, const Buffer& w,
                            double* out) const override {
        require_sizes(cols > 0 && f.size() == w.size() * cols, "features_expm1_sum");
        if (b < 1) throw std::invalid_argument("features_expm1_sum: need at least one right-hand side");
        ws_.vec_a.upload(v, static_cast<std::size_t>(cols) * b);  // F and w stay where they are
        ws_.out_b.resize(b);
        fastnplm::FASTNPLM_CUDA_NS::features_expm1_sum(f.data(), w.size(), cols, ws_.vec_a.data(), b, w.data(),
                                                       ws_.out_b.data(), ws_);
        ws_.out_b.download(out, b);
    }
    void symv(const Buffer& a, const Buffer& x, Buffer& y) const override {
        const std::int64_t n = x.size();
        require_sizes(y.size() == n && a.size() == n * n, "symv");
        dense_symv(a.data(), static_cast<int>(n), x.data(), y.data());
    }
    void trsv_upper(const Buffer& u, bool trans, Buffer& b) const override {
        require_sizes(u.size() == b.size() * b.size(), "trsv_upper");
        dense_trsv_upper(u.data(), static_cast<int>(b.size()), trans, b.data());
    }
    void trmv_upper(const Buffer& u, bool trans, Buffer& x) const override {
        require_sizes(u.size() == x.size() * x.size(), "trmv_upper");
        dense_trmv_upper(u.data(), static_cast<int>(x.size()), trans, x.data(), ws_);
    }
    void scale_columns_upper(Buffer& u, const Buffer& s) const override {
        require_sizes(u.size() == s.size() * s.size(), "scale_columns_upper");
        dense_scale_columns_upper(u.data(), static_cast<int>(s.size()), s.data());
    }
    void divide_shift_upper(Buffer& a, int n, double div, double shift) const override {
        require_sizes(a.size() == static_cast<std::int64_t>(n) * n, "divide_shift_upper");
        dense_divide_shift_upper(a.data(), n, div, shift);
    }
    // The hand-written dense kernels of dense.cu (the O(M^3) work of the preconditioner).
    int cholesky_upper(Buffer& a, int n) const override {
        require_sizes(a.size() == static_cast<std::int64_t>(n) * n, "cholesky_upper");
        return dense_cholesky_upper(a.data(), n, ws_);
    }
    void lauum_upper(Buffer& u, int n) const override {
        require_sizes(u.size() == static_cast<std::int64_t>(n) * n, "lauum_upper");
        dense_lauum_upper(u.data(), n, ws_);
    }

private:
    struct Entry {
        const double* ptr;
        std::int64_t rows, cols, stride;
        bool transposed;
        DeviceArray<double> dev;
        std::uint64_t used;
    };

    // The device copy of m: row-major (rows, cols) compact, or transposed (cols, rows).
    const double* cached(MatrixView m, bool transposed) const {
        if (m.cols > 1 << 30) throw std::invalid_argument("CUDA backend: too many features");
        ++clock_;
        for (Entry& e : cache_)
            if (e.ptr == m.data && e.rows == m.rows && e.cols == m.cols && e.stride == m.stride &&
                e.transposed == transposed) {
                e.used = clock_;
                return e.dev.data();
            }
        std::vector<double> host(static_cast<std::size_t>(m.rows * m.cols));
        for (std::int64_t i = 0; i < m.rows; ++i)
            for (std::int64_t k = 0; k < m.cols; ++k) host[transposed ? k * m.rows + i : i * m.cols + k] = m.row(i)[k];
        if (cache_.size() == kCacheEntries)
            cache_.erase(std::min_element(cache_.begin(), cache_.end(),
                                          [](const Entry& a, const Entry& b) { return a.used < b.used; }));
        cache_.push_back(Entry{m.data, m.rows, m.cols, m.stride, transposed, DeviceArray<double>(), clock_});
        cache_.back().dev.upload(host.data(), host.size());
        return cache_.back().dev.data();
    }
    DevicePoints points(MatrixView x) const { return {cached(x, false), x.rows, static_cast<int>(x.cols)}; }
    DeviceCenters centers(MatrixView c) const { return {cached(c, true), c.rows, static_cast<int>(c.cols)}; }

    static std::size_t bytes(const Buffer& b) { return static_cast<std::size_t>(b.size()) * sizeof(double); }

    mutable std::vector<Entry> cache_;
    mutable DeviceArray<double> dot_out_;  // dot()'s device scalar
    mutable std::uint64_t clock_ = 0;
    mutable Workspace ws_;
};

}  // namespace

std::unique_ptr<KernelOps> make_ops(int device) { return std::make_unique<CudaOps>(device); }

bool device_available() {
    static const bool available = [] {
        int count = 0;
        return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    }();
    return available;
}

const std::vector<std::string>& kernel_names() {
    static const std::vector<std::string> names = {
        // gauss.cu
        "block_kernel", "mv_kernel", "tmv_kernel", "fused_kernel", "mm_expm1_kernel", "sum_blocks_kernel",
        "feature_rows_kernel", "feature_gram_accumulate_kernel",
        // vector.cu
        "axpy_kernel", "xpby_kernel", "dot_partial_kernel", "dot_final_kernel",
        // dense.cu
        "potrf_diag_kernel", "trsm_panel_kernel", "syrk_update_kernel", "lauum_kernel", "copy_upper_kernel",
        "trsv_kernel", "trmv_kernel", "symv_kernel", "scale_columns_upper_kernel", "divide_shift_upper_kernel"};
    static const std::vector<std::string> all = [] {
        std::vector<std::string> v = names;
        for (const auto* more : {&feature_kernel_names(), &mlp_kernel_names()})
            v.insert(v.end(), more->begin(), more->end());
        return v;
    }();
    return all;
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS

#if !defined(FASTNPLM_CUDA_EMU)
// The public entry points (fastnplm/cuda.hpp) of a CUDA build, and its KernelOps for make_ops.
namespace fastnplm {

bool cuda_built() { return true; }
bool cuda_device_available() { return cuda::device_available(); }
std::string cuda_architectures() {
#ifdef FASTNPLM_CUDA_ARCHITECTURES
    return FASTNPLM_CUDA_ARCHITECTURES;
#else
    return {};
#endif
}
std::vector<std::string> cuda_kernel_names() { return cuda::kernel_names(); }
std::unique_ptr<KernelOps> detail::make_cuda_kernel_ops(int device) { return cuda::make_ops(device); }

}  // namespace fastnplm
#endif
