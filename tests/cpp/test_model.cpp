// Saved models: a save/load round trip keeps every number bit for bit; evaluation equals
// f computed by textbook loops (with the preprocessing applied by hand); damaged files are
// refused with a message.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "samples.hpp"
#include "fastnplm/model.hpp"

using fastnplm::MatrixView;
using fastnplm::Model;

namespace {

using samples::uniform;

std::string tmp_path(const char* name) { return std::string("fastnplm_test_") + name + ".fnplm"; }

std::vector<unsigned char> read_all(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& p, const std::vector<unsigned char>& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST(kernel_model_round_trip_and_evaluation) {
    const std::int64_t M = 13, d = 3, n = 77;
    const auto c = uniform(M * d, 1), a = uniform(M, 2, -5, 5), x = uniform(n * d, 3, -2, 2);
    const double sigma = 0.7, shift[3] = {0.1, -0.2, 0.3}, scale[3] = {1.5, 0.5, 2.0};
    Model m = Model::kernel(MatrixView(c.data(), M, d), a.data(), sigma);
    m.set_preprocessing(shift, scale);
    m.set_metadata("{\"kind\": \"kernel\"}");
    const std::string p = tmp_path("kernel");
    m.save(p);
    const Model r = Model::load(p);
    std::remove(p.c_str());
    CHECK(r.kind() == fastnplm::ModelKind::kernel && r.n_features() == d && r.metadata() == m.metadata());
    CHECK(r.centers() == c && r.alpha() == a && r.sigma() == sigma && r.shift() == m.shift() && r.scale() == m.scale());
    std::vector<double> f(n);
    r.evaluate(MatrixView(x.data(), n, d), f.data(), 2);
    for (std::int64_t i = 0; i < n; ++i) {
        double want = 0.0;
        for (std::int64_t j = 0; j < M; ++j) {
            double s = 0.0;
            for (std::int64_t k = 0; k < d; ++k) {
                const double z = (x[i * d + k] - shift[k]) / scale[k] - c[j * d + k];
                s += z * z;
            }
            want += a[j] * std::exp(-s / (2 * sigma * sigma));
        }
        CHECK_CLOSE(f[i], want, 1e-13, 1e-13);
    }
}

TEST(neural_model_round_trip_and_evaluation) {
    fastnplm::MlpShape s;
    s.d = 2;
    s.hidden = {4, 3};
    const auto p = uniform(static_cast<std::size_t>(s.n_params()), 4, -2, 2);
    const std::int64_t n = 41;
    const auto x = uniform(n * 2, 5, -3, 3);
    const Model m = Model::neural(s, p.data());
    const std::string path = tmp_path("neural");
    m.save(path);
    const Model r = Model::load(path);
    std::remove(path.c_str());
    CHECK(r.kind() == fastnplm::ModelKind::neural && r.shape().hidden == s.hidden && r.params() == p);
    CHECK(!r.has_preprocessing() && r.metadata().empty());
    std::vector<double> f(n);
    r.evaluate(MatrixView(x.data(), n, 2), f.data(), 1);
    for (std::int64_t i = 0; i < n; ++i) {  // textbook forward pass, flat order of mlp.hpp
        double h1[4], h2[3];
        for (int j = 0; j < 4; ++j)
            h1[j] = 1 / (1 + std::exp(-(p[8 + j] + p[2 * j] * x[2 * i] + p[2 * j + 1] * x[2 * i + 1])));
        for (int j = 0; j < 3; ++j) {
            double z = p[24 + j];
            for (int k = 0; k < 4; ++k) z += p[12 + 4 * j + k] * h1[k];
            h2[j] = 1 / (1 + std::exp(-z));
        }
        double out = p[30];
        for (int k = 0; k < 3; ++k) out += p[27 + k] * h2[k];
        CHECK_CLOSE(f[i], out, 1e-13, 1e-13);
    }
}

TEST(damaged_model_files_are_refused) {
    const auto c = uniform(4, 6), a = uniform(4, 7);
    const std::string p = tmp_path("damaged");
    Model::kernel(MatrixView(c.data(), 4, 1), a.data(), 1.0).save(p);
    const auto good = read_all(p);
    auto expect_refused = [&](std::vector<unsigned char> b, const char* why) {
        write_all(p, b);
        bool thrown = false;
        try {
            Model::load(p);
        } catch (const std::runtime_error& e) {
            thrown = std::string(e.what()).find(why) != std::string::npos;
        }
        CHECK(thrown);
    };
    auto flipped = good;
    flipped[good.size() / 2] ^= 1;
    expect_refused(flipped, "hash mismatch");
    expect_refused(std::vector<unsigned char>(good.begin(), good.end() - 9), "hash mismatch");
    auto magic = good;
    magic[0] = 'X';
    expect_refused(magic, "magic");
    auto newer = good;
    newer[8] = 2;
    expect_refused(newer, "version 2");
    std::remove(p.c_str());
    CHECK_THROWS(Model::load("does/not/exist.fnplm"), std::runtime_error);
    CHECK_THROWS(Model::kernel(MatrixView(c.data(), 4, 1), a.data(), -1.0), std::invalid_argument);
    const Model m = Model::kernel(MatrixView(c.data(), 4, 1), a.data(), 1.0);
    std::vector<double> x(6), f(3);
    CHECK_THROWS(m.evaluate(MatrixView(x.data(), 3, 2), f.data()), std::invalid_argument);
    const double bad_scale = 0.0, zero = 0.0;
    Model m2 = m;
    CHECK_THROWS(m2.set_preprocessing(&zero, &bad_scale), std::invalid_argument);
}
