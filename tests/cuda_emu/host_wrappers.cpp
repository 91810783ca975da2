// The host-pointer wrappers of host_wrappers.hpp, on the device launchers of device.cuh.
#include "host_wrappers.hpp"

#include <cstddef>

#include "device.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {
namespace {

// The one Workspace of the wrappers.
Workspace& wrapper_workspace() {
    static Workspace ws;
    return ws;
}

}  // namespace

double dot(const double* x, const double* y, std::int64_t n) {
    Workspace& ws = wrapper_workspace();
    DeviceArray<double> dx, dy, out(1);
    dx.upload(x, n);
    dy.upload(y, n);
    vec_dot(n, dx.data(), dy.data(), out.data(), ws);
    double r = 0.0;
    out.download(&r, 1);
    return r;
}

void axpy(std::int64_t n, double a, const double* x, double* y) {
    DeviceArray<double> dx, dy;
    dx.upload(x, n);
    dy.upload(y, n);
    vec_axpy(n, a, dx.data(), dy.data());
    dy.download(y, n);
}

void xpby(std::int64_t n, const double* x, double b, double* y) {
    DeviceArray<double> dx, dy;
    dx.upload(x, n);
    dy.upload(y, n);
    vec_xpby(n, dx.data(), b, dy.data());
    dy.download(y, n);
}

int cholesky_upper(double* a, int n) {
    const std::size_t nn = static_cast<std::size_t>(n) * n;
    DeviceArray<double> da;
    da.upload(a, nn);
    const int info = dense_cholesky_upper(da.data(), n, wrapper_workspace());
    da.download(a, nn);
    return info;
}

void lauum_upper(double* u, int n) {
    const std::size_t nn = static_cast<std::size_t>(n) * n;
    DeviceArray<double> du;
    du.upload(u, nn);
    dense_lauum_upper(du.data(), n, wrapper_workspace());
    du.download(u, nn);
}

void trsv_upper(const double* u, int n, bool trans, double* b) {
    DeviceArray<double> du, db;
    du.upload(u, static_cast<std::size_t>(n) * n);
    db.upload(b, n);
    dense_trsv_upper(du.data(), n, trans, db.data());
    db.download(b, n);
}

void trmv_upper(const double* u, int n, bool trans, double* x) {
    DeviceArray<double> du, dx;
    du.upload(u, static_cast<std::size_t>(n) * n);
    dx.upload(x, n);
    dense_trmv_upper(du.data(), n, trans, dx.data(), wrapper_workspace());
    dx.download(x, n);
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS
