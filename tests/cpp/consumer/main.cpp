// Embedding example: a kernel-NPLM fit from C++ alone (no Python), as trigger software would.
#include <cstdio>
#include <random>
#include <vector>

#include "fastnplm/kernel_nplm.hpp"

int main() {
    std::mt19937_64 g(1);
    std::exponential_distribution<double> e(1.0);
    const int nr = 20000, nd = 200, m = 30;
    std::vector<double> ref(nr), dat(nd), w(nr, double(nd) / nr);
    for (auto& x : ref) x = e(g);
    for (auto& x : dat) x = e(g);
    std::vector<double> ctr(ref.begin(), ref.begin() + m);
    fastnplm::KernelFitOptions o;
    o.sigma = 0.5;
    o.penalties = {1e-6};
    const auto r =
        fastnplm::fit_kernel_nplm({ref.data(), nr, 1}, w.data(), {dat.data(), nd, 1}, {ctr.data(), m, 1}, nullptr, o);
    std::printf("t = %.6f converged = %d blas = %s\n", r.t, int(r.converged), fastnplm::blas_name());
    return r.converged && r.t == r.t ? 0 : 1;
}
