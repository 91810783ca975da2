#pragma once
// Projected-feature passes of the batched-toy path (cuda/features.cu); device pointers, the
// contracts of the KernelOps methods of the same names (fastnplm/kernel_ops.hpp).
#include <cstdint>
#include <string>
#include <vector>

#include "device.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {

/// F = K(x, c) G (G: m x r row-major); out_f (n x r) = F, out_w (r x r) = F^T diag(w) F,
/// out_g (r) = F^T u; any output may be nullptr (then w or u may be too).
void feature_project(DevicePoints x, DeviceCenters c, double gamma, const double* g, std::int64_t r, const double* w,
                     const double* u, double* out_f, double* out_w, double* out_g, Workspace& ws);

/// out (r x r) = F^T diag(w) F for stored rows f (n x r).
void features_gram(const double* f, std::int64_t n, std::int64_t r, const double* w, double* out, Workspace& ws);

/// out_q = sum_i w_i expm1((F V)_iq), f (n x r), V (r x b) row-major.
void features_expm1_sum(const double* f, std::int64_t n, std::int64_t r, const double* v, std::int64_t b,
                        const double* w, double* out, Workspace& ws);

/// Names of the __global__ functions in cuda/features.cu.
const std::vector<std::string>& feature_kernel_names();

}  // namespace fastnplm::FASTNPLM_CUDA_NS
