// fastnplm from C++ alone, as trigger or data-quality software would use it.
//
//   embed fit MODEL        fit kernel NPLM on a generated sample (reference Exp(1), data with a
//                          bump), save f to MODEL, load it back and check it against the fit
//   embed eval MODEL EVENTS
//                          evaluate a saved model (written by C++ or Python) on EVENTS, raw
//                          little-endian float64 rows of the model's d features; prints f,
//                          one value per line
//   embed rate MODEL N     evaluate the model on batches of N events, print events per second
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastnplm/kernel_nplm.hpp"
#include "fastnplm/model.hpp"

namespace {

int fit(const std::string& path) {
    std::mt19937_64 g(1);
    std::exponential_distribution<double> ex(1.0);
    std::normal_distribution<double> bump(4.0, 0.2);
    const std::int64_t nr = 50000, nd = 520, m = 40;
    std::vector<double> ref(nr), dat(nd), w(nr, 500.0 / nr);
    for (auto& x : ref) x = ex(g);
    for (std::int64_t i = 0; i < nd; ++i) dat[i] = i < 500 ? ex(g) : bump(g);
    std::vector<double> ctr(ref.begin(), ref.begin() + m);  // centers: the first reference events
    fastnplm::KernelFitOptions o;
    o.sigma = 0.5;
    o.penalties = {1e-6};
    const auto r =
        fastnplm::fit_kernel_nplm({ref.data(), nr, 1}, w.data(), {dat.data(), nd, 1}, {ctr.data(), m, 1}, nullptr, o);
    fastnplm::Model model = fastnplm::Model::kernel({ctr.data(), m, 1}, r.alpha.data(), o.sigma);
    model.set_metadata("{\"source\": \"examples/cpp/embed.cpp\", \"t\": " + std::to_string(r.t) + "}");
    model.save(path);
    const fastnplm::Model back = fastnplm::Model::load(path);
    std::vector<double> f(nd);
    back.evaluate({dat.data(), nd, 1}, f.data());
    double err = 0.0;
    for (std::int64_t i = 0; i < nd; ++i) err = std::fmax(err, std::fabs(f[i] - r.f_data[i]));
    std::printf("t = %.6f converged = %d\nsaved %s (M = %lld)\nmax |f_loaded - f_fit| on the data = %.3g\n", r.t,
                int(r.converged), path.c_str(), static_cast<long long>(m), err);
    return r.converged && err < 1e-12 ? 0 : 1;
}

std::vector<double> read_events(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    const std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (b.size() % sizeof(double) != 0) throw std::runtime_error(path + " is not a whole number of float64 values");
    std::vector<double> x(b.size() / sizeof(double));
    std::copy(b.data(), b.data() + b.size(), reinterpret_cast<char*>(x.data()));
    return x;
}

int eval(const std::string& model_path, const std::string& events_path) {
    const fastnplm::Model m = fastnplm::Model::load(model_path);
    const std::vector<double> x = read_events(events_path);
    const std::int64_t d = m.n_features(), n = static_cast<std::int64_t>(x.size()) / d;
    if (n * d != static_cast<std::int64_t>(x.size())) throw std::runtime_error("events are not rows of d features");
    std::vector<double> f(n);
    m.evaluate({x.data(), n, d}, f.data());
    for (double v : f) std::printf("%.17g\n", v);
    return 0;
}

int rate(const std::string& model_path, std::int64_t n) {
    const fastnplm::Model m = fastnplm::Model::load(model_path);
    const std::int64_t d = m.n_features();
    std::mt19937_64 g(2);
    std::normal_distribution<double> N(0.0, 1.0);
    std::vector<double> x(n * d), f(n);
    for (auto& v : x) v = N(g);
    m.evaluate({x.data(), n, d}, f.data());  // warm-up
    int reps = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double s = 0.0;
    do {
        m.evaluate({x.data(), n, d}, f.data());
        ++reps;
        s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (s < 0.5);
    std::printf("%.6g events/s (batches of %lld, %d batches)\n", n * reps / s, static_cast<long long>(n), reps);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    try {
        if (cmd == "fit" && argc == 3) return fit(argv[2]);
        if (cmd == "eval" && argc == 4) return eval(argv[2], argv[3]);
        if (cmd == "rate" && argc == 4) return rate(argv[2], std::atoll(argv[3]));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "embed: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: embed fit MODEL | embed eval MODEL EVENTS | embed rate MODEL N\n");
    return 2;
}
