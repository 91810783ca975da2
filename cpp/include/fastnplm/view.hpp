#pragma once
// Non-owning views over caller memory: the core never copies an input array.
#include <cstdint>

namespace fastnplm {

/// Read-only row-major matrix view: element (i, k) is data[i * stride + k].
struct MatrixView {
    const double* data = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::int64_t stride = 0;

    MatrixView() = default;
    MatrixView(const double* d, std::int64_t r, std::int64_t c, std::int64_t s = -1)
        : data(d), rows(r), cols(c), stride(s < 0 ? c : s) {}
    const double* row(std::int64_t i) const { return data + i * stride; }
};

}  // namespace fastnplm
