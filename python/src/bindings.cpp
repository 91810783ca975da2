// pybind11 bindings: convert arrays, release the GIL, call the core. No algorithms here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastnplm/cuda.hpp"
#include "fastnplm/device.hpp"
#include "fastnplm/kernel_nplm.hpp"
#include "fastnplm/kernel_ops.hpp"
#include "fastnplm/kernel_shared.hpp"
#include "bindings_bench.hpp"
#include "bindings_neural.hpp"
#include "results.hpp"
#include "bindings_hessian.hpp"

#include "arrays.hpp"

namespace py = pybind11;
using namespace fastnplm;
using fastnplm_bindings::flat;
using fastnplm_bindings::ResultClass;

namespace {

// forcecast + c_style: a float64 C-contiguous array passes through without a copy; the
// Python layer converts explicitly beforehand so any copy is visible there.
using fastnplm_bindings::Array;

MatrixView matrix(const Array& a, const char* name) {
    if (a.ndim() != 2)
        throw std::invalid_argument(std::string(name) + " must be a 2-D array (events, features), got " +
                                    std::to_string(a.ndim()) + "-D");
    return MatrixView(a.data(), a.shape(0), a.shape(1));
}

const double* vector(const Array& a, py::ssize_t n, const char* name) {
    if (a.ndim() != 1 || a.shape(0) != n)
        throw std::invalid_argument(std::string(name) + " must be a 1-D array of length " + std::to_string(n));
    return a.data();
}

Solver parse_solver(const std::string& s) {
    if (s == "newton-step") return Solver::NewtonStep;
    if (s == "newton") return Solver::Newton;
    throw std::invalid_argument("unknown solver '" + s + "': expected 'newton-step' or 'newton'");
}

// The backend named "cpu", "cuda" or "auto" (fastnplm/device.hpp). A fresh one per call: the CUDA
// backend's device cache assumes the call's inputs stay unchanged, which holds for one call.
std::unique_ptr<KernelOps> make_backend(const std::string& backend, int threads) {
    return make_ops(parse_device(backend), threads);
}

KernelFitResult fit_kernel(const Array& reference, const Array& weights, const Array& data, const Array& centers,
                           const std::optional<Array>& center_scale, double sigma, std::vector<double> penalties,
                           const std::string& solver, double cg_tol, int max_iter, double grad_tol, int max_newton,
                           double pc_epsilon, int threads, int dense_hessian_max_m, const std::string& backend) {
    const MatrixView r = matrix(reference, "reference"), d = matrix(data, "data"), c = matrix(centers, "centers");
    const double* w = vector(weights, r.rows, "reference_weights");
    const double* cs = center_scale ? vector(*center_scale, c.rows, "center_scale") : nullptr;
    KernelFitOptions o;
    o.sigma = sigma;
    o.penalties = std::move(penalties);
    o.solver = parse_solver(solver);
    o.cg_tol = cg_tol;
    o.max_iter = max_iter;
    o.grad_tol = grad_tol;
    o.max_newton = max_newton;
    o.pc_epsilon = pc_epsilon;
    o.threads = threads;
    o.dense_hessian_max_m = dense_hessian_max_m;
    const std::unique_ptr<KernelOps> ops = make_backend(backend, threads);
    KernelFitResult res;
    {
        // Safe: the arrays above are owned by this frame and read-only for the call.
        py::gil_scoped_release release;
        res = fit_kernel_nplm(r, w, d, c, cs, o, *ops);
    }
    return res;
}

double gamma_of(double sigma) {
    if (!(sigma > 0) || !std::isfinite(sigma)) throw std::invalid_argument("sigma must be finite and > 0");
    return 1.0 / (2.0 * sigma * sigma);
}

// Runs one backend primitive on (x, centers) into a fresh output array, GIL released.
template <class F>
py::array_t<double> run_primitive(const Array& x, const Array& c, double sigma, int threads,
                                  std::vector<py::ssize_t> shape, F&& call) {
    const MatrixView xv = matrix(x, "x"), cv = matrix(c, "centers");
    const double g = gamma_of(sigma);
    py::array_t<double> out(shape);
    double* o = out.mutable_data();
    {
        py::gil_scoped_release release;  // safe: inputs are owned by the caller's frame
        call(*make_ops(Device::cpu, threads), xv, cv, g, o);
    }
    return out;
}

py::ssize_t rows(const Array& a) { return a.ndim() > 0 ? a.shape(0) : 0; }

py::array_t<double> kernel_matrix(const Array& x, const Array& c, double sigma, int threads) {
    return run_primitive(x, c, sigma, threads, {rows(x), rows(c)},
                         [](const KernelOps& ops, MatrixView xv, MatrixView cv, double g, double* o) {
                             ops.kernel_block(xv, cv, g, o, cv.rows);
                         });
}

py::array_t<double> kernel_mv(const Array& x, const Array& c, double sigma, const Array& v, int threads) {
    const double* vp = vector(v, rows(c), "v");
    return run_primitive(x, c, sigma, threads, {rows(x)},
                         [vp](const KernelOps& ops, MatrixView xv, MatrixView cv, double g, double* o) {
                             ops.kernel_mv(xv, cv, g, vp, o);
                         });
}

py::array_t<double> kernel_mm_expm1_sum(const Array& x, const Array& c, double sigma, const Array& v, const Array& w,
                                        int threads) {
    if (v.ndim() != 2 || v.shape(0) != rows(c))
        throw std::invalid_argument("V must be a 2-D array with one row per center");
    const double* vp = v.data();
    const double* wp = vector(w, rows(x), "w");
    const py::ssize_t b = v.shape(1);
    return run_primitive(x, c, sigma, threads, {b},
                         [vp, wp, b](const KernelOps& ops, MatrixView xv, MatrixView cv, double g, double* o) {
                             ops.kernel_mm_expm1_sum(xv, cv, g, vp, b, wp, o);
                         });
}

py::tuple feature_project(const Array& x, const Array& c, double sigma, const Array& g, const std::optional<Array>& w,
                          const std::optional<Array>& u, bool features, int threads, const std::string& backend) {
    const MatrixView xv = matrix(x, "x"), cv = matrix(c, "centers");
    if (g.ndim() != 2 || g.shape(0) != cv.rows)
        throw std::invalid_argument("G must be a 2-D array with one row per center");
    const double gm = gamma_of(sigma);
    const py::ssize_t n = xv.rows, r = g.shape(1);
    const double* wp = w ? vector(*w, n, "w") : nullptr;
    const double* up = u ? vector(*u, n, "u") : nullptr;
    py::object f = py::none(), wout = py::none(), gout = py::none();
    double *fp = nullptr, *wo = nullptr, *go = nullptr;
    if (features) {
        py::array_t<double> a({n, r});
        fp = a.mutable_data();
        f = a;
    }
    if (wp) {
        py::array_t<double> a({r, r});
        wo = a.mutable_data();
        wout = a;
    }
    if (up) {
        py::array_t<double> a(r);
        go = a.mutable_data();
        gout = a;
    }
    const double* gp = g.data();
    {
        py::gil_scoped_release release;  // safe: inputs and outputs are owned by this frame
        make_backend(backend, threads)->feature_project(xv, cv, gm, gp, r, wp, up, fp, wo, go);
    }
    return py::make_tuple(f, wout, gout);
}

py::array_t<double> features_gram(const Array& f, const Array& w, int threads, const std::string& backend) {
    const MatrixView fv = matrix(f, "features");
    const double* wp = vector(w, fv.rows, "w");
    py::array_t<double> out({fv.cols, fv.cols});
    double* o = out.mutable_data();
    {
        py::gil_scoped_release release;  // safe: inputs are owned by the caller's frame
        make_backend(backend, threads)->features_gram(fv, wp, o);
    }
    return out;
}

// Stored reference features (n, r) and their weights copied once into a backend's memory, for
// the calibration's batches of toys: each batch then moves only V in and the b sums out.
class ResidentFeatures {
public:
    ResidentFeatures(const Array& f, const Array& w, int threads, const std::string& backend)
        : ops_(make_backend(backend, threads)) {
        const MatrixView fv = matrix(f, "features");
        if (fv.rows < 1 || fv.cols < 1) throw std::invalid_argument("features must have at least one row and column");
        const double* wp = vector(w, fv.rows, "w");
        cols_ = fv.cols;
        f_ = ops_->alloc(fv.rows * fv.cols);
        w_ = ops_->alloc(fv.rows);
        py::gil_scoped_release release;  // safe: f and w are held by the caller for the copy
        ops_->upload(fv.data, f_);
        ops_->upload(wp, w_);
    }
    py::array_t<double> expm1_sum(const Array& v) const {
        if (v.ndim() != 2 || v.shape(0) != cols_)
            throw std::invalid_argument("V must be a 2-D array with one row per feature column (" +
                                        std::to_string(cols_) + ")");
        const py::ssize_t b = v.shape(1);
        py::array_t<double> out(b);
        double* o = out.mutable_data();
        const double* vp = v.data();
        py::gil_scoped_release release;  // safe: v and out are owned by the caller's frame
        ops_->features_expm1_sum(f_, cols_, vp, b, w_, o);
        return out;
    }

private:
    std::unique_ptr<KernelOps> ops_;
    std::int64_t cols_ = 0;
    Buffer f_, w_;
};

// The shared-reference solver (kernel_shared.hpp). Holds the arrays it views, so they outlive it.
class SharedSolver {
public:
    SharedSolver(Array reference, Array weights, Array centers, const std::optional<Array>& center_scale, double sigma,
                 double lam, double cg_tol, int max_iter, double pc_epsilon, int threads)
        : ref_(std::move(reference)), w_(std::move(weights)), ctr_(std::move(centers)) {
        const MatrixView r = matrix(ref_, "reference"), c = matrix(ctr_, "centers");
        const double* w = vector(w_, r.rows, "reference_weights");
        const double* cs = center_scale ? vector(*center_scale, c.rows, "center_scale") : nullptr;
        SharedFitOptions o;
        o.sigma = sigma;
        o.lam = lam;
        o.cg_tol = cg_tol;
        o.max_iter = max_iter;
        o.pc_epsilon = pc_epsilon;
        o.threads = threads;
        py::gil_scoped_release release;  // safe: the arrays are members of this object
        solver_ = std::make_unique<SharedReference>(r, w, c, cs, o);
    }

    std::vector<SharedFitResult> fit(const std::vector<Array>& datasets) const {
        std::vector<MatrixView> views;
        for (const Array& d : datasets) views.push_back(matrix(d, "data"));
        py::gil_scoped_release release;  // safe: datasets is held by the caller's frame
        return solver_->fit(views);
    }

    double n0() const { return solver_->n0(); }

private:
    Array ref_, w_, ctr_;
    std::unique_ptr<SharedReference> solver_;
};

py::array_t<double> kernel_gram_mm(const Array& x, const Array& c, double sigma, const Array& v, const Array& w,
                                   int threads) {
    const MatrixView xv = matrix(x, "x"), cv = matrix(c, "centers");
    if (v.ndim() != 2 || v.shape(0) != cv.rows)
        throw std::invalid_argument("V must be a 2-D array with one row per center (" + std::to_string(cv.rows) + ")");
    if (!(std::isfinite(sigma) && sigma > 0)) throw std::invalid_argument("sigma must be finite and > 0");
    const double* wp = vector(w, xv.rows, "w");
    const py::ssize_t b = v.shape(1);
    py::array_t<double> out({cv.rows, static_cast<std::int64_t>(b)});
    double* o = out.mutable_data();
    const double* vp = v.data();
    {
        py::gil_scoped_release release;  // safe: inputs are owned by the caller's frame
        make_ops(Device::cpu, threads)->kernel_gram_mm(xv, cv, 1.0 / (2.0 * sigma * sigma), vp, b, wp, o);
    }
    return out;
}

py::array_t<double> features_expm1_sum(const Array& f, const Array& v, const Array& w, int threads,
                                       const std::string& backend) {
    const MatrixView fv = matrix(f, "features");
    if (v.ndim() != 2 || v.shape(0) != fv.cols)
        throw std::invalid_argument("V must be a 2-D array with one row per feature column");
    const double* wp = vector(w, fv.rows, "w");
    const py::ssize_t b = v.shape(1);
    py::array_t<double> out(b);
    double* o = out.mutable_data();
    const double* vp = v.data();
    {
        py::gil_scoped_release release;  // safe: inputs are owned by the caller's frame
        make_backend(backend, threads)->features_expm1_sum(fv, vp, b, wp, o);
    }
    return out;
}

py::array_t<double> kernel_tmv(const Array& x, const Array& c, double sigma, const Array& u, int threads) {
    const double* up = vector(u, rows(x), "u");
    return run_primitive(x, c, sigma, threads, {rows(c)},
                         [up](const KernelOps& ops, MatrixView xv, MatrixView cv, double g, double* o) {
                             ops.kernel_tmv(xv, cv, g, up, o);
                         });
}

py::array_t<double> kernel_fused(const Array& x, const Array& c, double sigma, const Array& v, const Array& w,
                                 int threads) {
    const double* vp = vector(v, rows(c), "v");
    const double* wp = vector(w, rows(x), "w");
    return run_primitive(x, c, sigma, threads, {rows(c)},
                         [vp, wp](const KernelOps& ops, MatrixView xv, MatrixView cv, double g, double* o) {
                             ops.kernel_fused(xv, cv, g, vp, wp, o);
                         });
}

py::tuple feature_gram(const Array& x, const Array& c, double sigma, const Array& t_upper, const Array& w,
                       const Array& u, int threads) {
    const py::ssize_t m = rows(c);
    if (t_upper.ndim() != 2 || t_upper.shape(0) != m || t_upper.shape(1) != m)
        throw std::invalid_argument("t_upper must be an (M, M) array");
    const double* tp = t_upper.data();  // C order: read as column-major it is T^T, so callers pass T^T
    const double* wp = vector(w, rows(x), "w");
    const double* up = vector(u, rows(x), "u");
    py::array_t<double> g(m);
    double* gp = g.mutable_data();
    py::array_t<double> wout = run_primitive(
        x, c, sigma, threads, {m, m}, [=](const KernelOps& ops, MatrixView xv, MatrixView cv, double gm, double* o) {
            ops.feature_gram(xv, cv, gm, tp, wp, up, o, gp);
        });
    return py::make_tuple(wout, g);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastnplm compiled core (CPU backend)";
    // A ValueError: what is wrong is the input (the reference weights for this lam), as with
    // std::invalid_argument; the Python solvers raise the same class.
    py::register_exception<NotPositiveDefinite>(m, "NotPositiveDefiniteError", PyExc_ValueError);
    ResultClass<KernelFitResult>(m, "KernelFitResult", "A kernel NPLM fit (fastnplm/kernel_nplm.hpp).")
        .array("alpha", &KernelFitResult::alpha, flat(&KernelFitResult::alpha), "(M,) coefficients")
        .field("t", &KernelFitResult::t, "2 [sum_D f - sum_R w (e^f - 1)]")
        .field("objective", &KernelFitResult::objective, "J at the fitted alpha")
        .field("converged", &KernelFitResult::converged,
               "every CG solve met cg_tol (and, Newton, the gradient met grad_tol)")
        .field("cg_iterations", &KernelFitResult::cg_iterations, "CG iterations of each Newton step")
        .field("cg_residuals", &KernelFitResult::cg_residuals, "final preconditioned residual norm of each Newton step")
        .field("newton_iterations", &KernelFitResult::newton_iterations, "Newton steps taken")
        .field("grad_norm", &KernelFitResult::grad_norm, "Newton solver: ||dJ/dbeta|| at the fit; NaN for newton-step")
        .array("f_reference", &KernelFitResult::f_reference, flat(&KernelFitResult::f_reference),
               "(N_R,) f at the reference events")
        .array("f_data", &KernelFitResult::f_data, flat(&KernelFitResult::f_data), "(N_D,) f at the data events");
    ResultClass<SharedFitResult>(m, "SharedFitResult", "One dataset's fit against a SharedReference.")
        .array("alpha", &SharedFitResult::alpha, flat(&SharedFitResult::alpha), "(M,) coefficients")
        .array("f_data", &SharedFitResult::f_data, flat(&SharedFitResult::f_data), "(N_D,) f at the data events")
        .field("t", &SharedFitResult::t, "2 [sum_D f - sum_R w (e^f - 1)]")
        .field("beta_sq", &SharedFitResult::beta_sq, "alpha^T (K_MM + eps M I) alpha: the penalty is lam/2 of it")
        .field("cg_iterations", &SharedFitResult::cg_iterations, "CG iterations")
        .field("cg_residual", &SharedFitResult::cg_residual, "final preconditioned residual norm")
        .field("converged", &SharedFitResult::converged, "CG met cg_tol");
    m.def("fit_kernel", &fit_kernel, py::arg("reference"), py::arg("weights"), py::arg("data"), py::arg("centers"),
          py::arg("center_scale"), py::arg("sigma"), py::arg("penalties"), py::arg("solver"), py::arg("cg_tol"),
          py::arg("max_iter"), py::arg("grad_tol"), py::arg("max_newton"), py::arg("pc_epsilon"), py::arg("threads"),
          py::arg("dense_hessian_max_m"), py::arg("backend") = "cpu",
          "Kernel NPLM fit on backend 'cpu', 'cuda' or 'auto'.");
    m.def("kernel_matrix", &kernel_matrix, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("threads") = 0,
          "Dense Gaussian kernel block K(x, centers).");
    m.def("kernel_mv", &kernel_mv, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("v"),
          py::arg("threads") = 0, "K(x, centers) @ v without storing K.");
    m.def("kernel_mm_expm1_sum", &kernel_mm_expm1_sum, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("V"),
          py::arg("w"), py::arg("threads") = 0,
          "sum_i w_i expm1((K(x, centers) @ V)[i]) per column of V, without storing the products.");
    m.def("feature_project", &feature_project, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("G"),
          py::arg("w") = py::none(), py::arg("u") = py::none(), py::arg("features") = true, py::arg("threads") = 0,
          py::arg("backend") = "cpu",
          "With F = K(x, centers) @ G in one pass: (F or None, F.T @ diag(w) @ F if w, F.T @ u if u).");
    m.def("features_gram", &features_gram, py::arg("F"), py::arg("w"), py::arg("threads") = 0,
          py::arg("backend") = "cpu", "F.T @ diag(w) @ F in a fixed summation order.");
    m.def("features_expm1_sum", &features_expm1_sum, py::arg("F"), py::arg("V"), py::arg("w"), py::arg("threads") = 0,
          py::arg("backend") = "cpu",
          "sum_i w_i expm1((F @ V)[i]) per column of V, summed in an order independent of V's width.");
    py::class_<ResidentFeatures>(m, "ResidentFeatures",
                                 "Feature rows F (n, r) and weights w kept in a backend's memory (device memory on "
                                 "CUDA) for repeated sum_i w_i expm1((F @ V)[i]).")
        .def(py::init<const Array&, const Array&, int, const std::string&>(), py::arg("F"), py::arg("w"),
             py::arg("threads") = 0, py::arg("backend") = "cpu")
        .def("expm1_sum", &ResidentFeatures::expm1_sum, py::arg("V"),
             "sum_i w_i expm1((F @ V)[i]) per column of V; as features_expm1_sum on the same backend.");
    py::class_<SharedSolver>(m, "SharedReference",
                             "Newton-step fits of many datasets against one reference, sharing the reference's "
                             "work (kernel_shared.hpp).")
        .def(py::init<Array, Array, Array, const std::optional<Array>&, double, double, double, int, double, int>(),
             py::arg("reference"), py::arg("weights"), py::arg("centers"), py::arg("center_scale"), py::arg("sigma"),
             py::arg("lam"), py::arg("cg_tol"), py::arg("max_iter"), py::arg("pc_epsilon"), py::arg("threads") = 0)
        .def("fit", &SharedSolver::fit, py::arg("datasets"), "One SharedFitResult per dataset, all solved together.")
        .def_property_readonly("n0", &SharedSolver::n0, "N_R + sum(w): the size the preconditioner is built for.");
    m.def("kernel_gram_mm", &kernel_gram_mm, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("V"),
          py::arg("w"), py::arg("threads") = 0, "K.T @ diag(w) @ K @ V, one kernel evaluation per pair.");
    m.def("kernel_tmv", &kernel_tmv, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("u"),
          py::arg("threads") = 0, "K(x, centers).T @ u without storing K.");
    m.def("kernel_fused", &kernel_fused, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("v"), py::arg("w"),
          py::arg("threads") = 0, "K.T @ (w * (K @ v)), one kernel evaluation per pair.");
    m.def("feature_gram", &feature_gram, py::arg("x"), py::arg("centers"), py::arg("sigma"), py::arg("t_upper_T"),
          py::arg("w"), py::arg("u"), py::arg("threads") = 0,
          "With B = K(x, centers) @ inv(T), T upper (pass T.T in C order): (B.T @ diag(w) @ B, B.T @ u).");
    m.def("blas_name", &blas_name, "The LAPACK/BLAS the core was built with.");
    m.def("default_threads", [] { return resolve_threads(0); }, "Threads used when threads=None.");
    m.def("cuda_built", &cuda_built, "Whether the CUDA backend was compiled in.");
    m.def("cuda_device_available", &cuda_device_available,
          "Whether a CUDA device can be used (probed on the first call, not at import).");
    m.def("cuda_architectures", &cuda_architectures, "CUDA architectures of the kernels ('' when not built).");
    m.def("cuda_kernel_names", &cuda_kernel_names, "Names of the compiled-in CUDA kernels.");
    m.attr("version") = FASTNPLM_VERSION;
    bind_neural(m);
    bind_bench(m);
    bind_hessian(m);
}
