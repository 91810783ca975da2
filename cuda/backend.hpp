#pragma once
// Host-side entry points of the CUDA backend (host pointers, no CUDA types), in
// fastnplm::cuda for the real build and fastnplm::cuda_emu for the CPU emulation of the
// tests, so one test binary can hold both. The public wrappers are in fastnplm/cuda.hpp.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastnplm/kernel_ops.hpp"

#if defined(FASTNPLM_CUDA_EMU)
#define FASTNPLM_CUDA_NS cuda_emu
#else
#define FASTNPLM_CUDA_NS cuda
#endif

namespace fastnplm::FASTNPLM_CUDA_NS {

/// The CUDA KernelOps on `device` (see make_cuda_ops for the caching rule).
std::unique_ptr<KernelOps> make_ops(int device);

/// Lazy device probe (first call only).
bool device_available();

/// Names of the __global__ functions in cuda/*.cu.
const std::vector<std::string>& kernel_names();

// Host-pointer wrappers of the device vector and dense work: copy in, run, copy out. They share
// one scratch Workspace: not for concurrent use from several host threads.

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
