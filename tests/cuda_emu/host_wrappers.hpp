#pragma once
// Host-pointer wrappers of the CUDA backend's vector and dense work (cuda/vector.cu, dense.cu),
// for the emulated tests to compare with the CPU loops and LAPACK: copy in, run, copy out. The
// backend itself runs this work on Buffers (CudaOps); only the tests need the host-pointer form.
// They share one scratch Workspace: not for concurrent use from several host threads.
#include <cstdint>

#include "backend.hpp"  // FASTNPLM_CUDA_NS

namespace fastnplm::FASTNPLM_CUDA_NS {

/// x . y by the deterministic device reduction.
double dot(const double* x, const double* y, std::int64_t n);
/// y += a x.
void axpy(std::int64_t n, double a, const double* x, double* y);
/// y = x + b y.
void xpby(std::int64_t n, const double* x, double b, double* y);
/// A = U^T U in place (column-major n x n, upper); 0 or the 1-based failing column.
int cholesky_upper(double* a, int n);
/// U <- U U^T in place (upper triangle).
void lauum_upper(double* u, int n);
/// b <- U^-1 b or U^-T b.
void trsv_upper(const double* u, int n, bool trans, double* b);
/// x <- U x or U^T x.
void trmv_upper(const double* u, int n, bool trans, double* x);

}  // namespace fastnplm::FASTNPLM_CUDA_NS
