// Saved models: the version-1 file format of model.hpp, and evaluation of f on events.
#include "fastnplm/model.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "fastnplm/kernel_ops.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model file format is little-endian; add byte swapping for this platform"
#endif

namespace fastnplm {
namespace {

constexpr char kMagic[8] = {'F', 'N', 'P', 'L', 'M', 'M', 'O', 'D'};
constexpr std::uint64_t kMaxCount = std::uint64_t(1) << 40;  // any real model is far below

std::uint64_t fnv1a(const unsigned char* p, std::size_t n) {
    std::uint64_t h = 14695981039346656037ull;
    for (std::size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void require_finite(const double* v, std::size_t n, const char* what) {
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i]))
            throw std::invalid_argument(std::string("model: ") + what + " has a non-finite value");
}

class Writer {
public:
    template <class T>
    void put(T v) {
        const auto* p = reinterpret_cast<const unsigned char*>(&v);
        buf_.insert(buf_.end(), p, p + sizeof v);
    }
    void bytes(const void* p, std::size_t n) {
        const auto* c = static_cast<const unsigned char*>(p);
        buf_.insert(buf_.end(), c, c + n);
    }
    void reals(const std::vector<double>& v) { bytes(v.data(), v.size() * sizeof(double)); }
    const std::vector<unsigned char>& finish() {
        put<std::uint64_t>(fnv1a(buf_.data(), buf_.size()));
        return buf_;
    }

private:
    std::vector<unsigned char> buf_;
};

class Reader {
public:
    Reader(const std::vector<unsigned char>& b, const std::string& path) : b_(b), path_(path) {}
    template <class T>
    T get(const char* what) {
        T v;
        take(&v, sizeof v, what);
        return v;
    }
    std::uint64_t count(const char* what, std::uint64_t lo = 1) {
        const auto v = get<std::uint64_t>(what);
        if (v < lo || v > kMaxCount) fail(std::string(what) + " = " + std::to_string(v) + " is out of range");
        return v;
    }
    std::vector<double> reals(std::uint64_t n, const char* what) {
        if (n > (b_.size() - pos_) / sizeof(double)) fail(std::string("truncated in ") + what);
        std::vector<double> v(n);
        take(v.data(), n * sizeof(double), what);
        for (double x : v)
            if (!std::isfinite(x)) fail(std::string(what) + " has a non-finite value");
        return v;
    }
    std::string text(std::uint64_t n, const char* what) {
        if (n > b_.size() - pos_) fail(std::string("truncated in ") + what);
        std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    std::size_t pos() const { return pos_; }
    [[noreturn]] void fail(const std::string& why) const {
        throw std::runtime_error("model file " + path_ + ": " + why);
    }

private:
    void take(void* dst, std::size_t n, const char* what) {
        if (n > b_.size() - pos_) fail(std::string("truncated in ") + what);
        std::memcpy(dst, b_.data() + pos_, n);
        pos_ += n;
    }
    const std::vector<unsigned char>& b_;
    std::string path_;
    std::size_t pos_ = 0;
};

}  // namespace

Model Model::kernel(MatrixView centers, const double* alpha, double sigma) {
    if (centers.rows < 1 || centers.cols < 1 || centers.data == nullptr)
        throw std::invalid_argument("model: a kernel model needs at least one center with at least one feature");
    if (alpha == nullptr) throw std::invalid_argument("model: alpha is missing");
    if (!(sigma > 0.0) || !std::isfinite(sigma)) throw std::invalid_argument("model: sigma must be finite and > 0");
    Model m;
    m.kind_ = ModelKind::kernel;
    m.d_ = centers.cols;
    m.sigma_ = sigma;
    m.centers_.reserve(static_cast<std::size_t>(centers.rows * centers.cols));
    for (std::int64_t i = 0; i < centers.rows; ++i)
        m.centers_.insert(m.centers_.end(), centers.row(i), centers.row(i) + centers.cols);
    m.alpha_.assign(alpha, alpha + centers.rows);
    require_finite(m.centers_.data(), m.centers_.size(), "centers");
    require_finite(m.alpha_.data(), m.alpha_.size(), "alpha");
    return m;
}

Model Model::neural(const MlpShape& shape, const double* params) {
    const std::int64_t p = shape.n_params();  // validates the shape
    if (params == nullptr) throw std::invalid_argument("model: the network parameters are missing");
    Model m;
    m.kind_ = ModelKind::neural;
    m.d_ = shape.d;
    m.shape_ = shape;
    m.params_.assign(params, params + p);
    require_finite(m.params_.data(), m.params_.size(), "network parameters");
    return m;
}

void Model::set_preprocessing(const double* shift, const double* scale) {
    if (shift == nullptr || scale == nullptr) throw std::invalid_argument("model: preprocessing needs shift and scale");
    std::vector<double> sh(shift, shift + d_), sc(scale, scale + d_);
    require_finite(sh.data(), sh.size(), "preprocessing shift");
    require_finite(sc.data(), sc.size(), "preprocessing scale");
    for (double s : sc)
        if (!(s > 0.0)) throw std::invalid_argument("model: preprocessing scales must be > 0");
    shift_ = std::move(sh);
    scale_ = std::move(sc);
}

void Model::save(const std::string& path) const {
    Writer w;
    w.bytes(kMagic, sizeof kMagic);
    w.put<std::uint32_t>(kModelFormatVersion);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(kind_));
    w.put<std::uint64_t>(static_cast<std::uint64_t>(d_));
    w.put<std::uint64_t>(metadata_.size());
    w.bytes(metadata_.data(), metadata_.size());
    w.put<std::uint32_t>(has_preprocessing() ? 1u : 0u);
    if (has_preprocessing()) {
        w.reals(shift_);
        w.reals(scale_);
    }
    if (kind_ == ModelKind::kernel) {
        w.put<std::uint64_t>(alpha_.size());
        w.put<double>(sigma_);
        w.reals(centers_);
        w.reals(alpha_);
    } else {
        w.put<std::uint64_t>(shape_.hidden.size());
        for (std::int64_t h : shape_.hidden) w.put<std::uint64_t>(static_cast<std::uint64_t>(h));
        w.reals(params_);
    }
    const auto& buf = w.finish();
    // write a sibling file, then rename: a reader never sees a half-written model
    const std::string tmp = path + ".part";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw std::runtime_error("model: cannot open " + tmp + " for writing");
        out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
        if (!out) throw std::runtime_error("model: writing " + tmp + " failed");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error("model: cannot rename " + tmp + " to " + path);
    }
}

Model Model::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("model file " + path + ": cannot be opened");
    const std::vector<unsigned char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Reader r(b, path);
    if (b.size() < sizeof kMagic + 8 || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0)
        r.fail("not a fastnplm model (magic \"FNPLMMOD\" missing)");
    std::uint64_t stored;
    std::memcpy(&stored, b.data() + b.size() - 8, 8);
    r.text(sizeof kMagic, "magic");
    const auto version = r.get<std::uint32_t>("version");
    if (version < 1 || version > kModelFormatVersion)
        r.fail("format version " + std::to_string(version) + " is not supported (this library reads up to " +
               std::to_string(kModelFormatVersion) + ")");
    if (fnv1a(b.data(), b.size() - 8) != stored) r.fail("hash mismatch: the file is truncated or corrupt");
    const auto kind = r.get<std::uint32_t>("kind");
    if (kind != 1 && kind != 2) r.fail("unknown model kind " + std::to_string(kind));
    Model m;
    m.kind_ = static_cast<ModelKind>(kind);
    m.d_ = static_cast<std::int64_t>(r.count("d"));
    const auto meta = r.count("metadata length", 0);
    m.metadata_ = r.text(meta, "metadata");
    const auto pre = r.get<std::uint32_t>("preprocessing flag");
    if (pre > 1) r.fail("bad preprocessing flag " + std::to_string(pre));
    if (pre == 1) {
        m.shift_ = r.reals(m.d_, "preprocessing shift");
        m.scale_ = r.reals(m.d_, "preprocessing scale");
        for (double s : m.scale_)
            if (!(s > 0.0)) r.fail("preprocessing scale <= 0");
    }
    if (m.kind_ == ModelKind::kernel) {
        const auto M = r.count("M");
        m.sigma_ = r.get<double>("sigma");
        if (!(m.sigma_ > 0.0) || !std::isfinite(m.sigma_)) r.fail("sigma must be finite and > 0");
        if (M > kMaxCount / static_cast<std::uint64_t>(m.d_)) r.fail("M x d is out of range");
        m.centers_ = r.reals(M * m.d_, "centers");
        m.alpha_ = r.reals(M, "alpha");
    } else {
        const auto k = r.count("hidden layer count");
        m.shape_.d = m.d_;
        for (std::uint64_t i = 0; i < k; ++i)
            m.shape_.hidden.push_back(static_cast<std::int64_t>(r.count("hidden width")));
        m.params_ = r.reals(static_cast<std::uint64_t>(m.shape_.n_params()), "network parameters");
    }
    if (r.pos() != b.size() - 8) r.fail(std::to_string(b.size() - 8 - r.pos()) + " unexpected bytes before the hash");
    return m;
}

void Model::evaluate(MatrixView x, double* out, int threads) const {
    if (x.cols != d_)
        throw std::invalid_argument("model: events have " + std::to_string(x.cols) + " features, the model takes " +
                                    std::to_string(d_));
    if (x.rows == 0) return;
    if (x.data == nullptr || out == nullptr) throw std::invalid_argument("model: null events or output");
    std::vector<double> xp;
    MatrixView xv = x;
    if (has_preprocessing()) {
        xp.resize(static_cast<std::size_t>(x.rows * d_));
        for (std::int64_t i = 0; i < x.rows; ++i)
            for (std::int64_t k = 0; k < d_; ++k) xp[i * d_ + k] = (x.row(i)[k] - shift_[k]) / scale_[k];
        xv = MatrixView(xp.data(), x.rows, d_);
    }
    if (kind_ == ModelKind::kernel) {
        const MatrixView c(centers_.data(), static_cast<std::int64_t>(alpha_.size()), d_);
        make_ops(Device::cpu, threads)->kernel_mv(xv, c, 0.5 / (sigma_ * sigma_), alpha_.data(), out);
    } else {
        mlp_predict(shape_, params_.data(), xv, out, threads);
    }
}

}  // namespace fastnplm
