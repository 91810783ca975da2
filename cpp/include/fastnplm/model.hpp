#pragma once
// A fitted NPLM model f(x) -- kernel (centers, alpha, sigma) or neural (layer sizes, weights) --
// with its feature preprocessing, saved to and loaded from one versioned binary file that
// Python (fastnplm.save_model / load_model) reads and writes too. Evaluating f on a batch of
// events is what an online (trigger, data-quality) loop does with a model fitted offline.
//
// File format, version 1 (all integers unsigned little-endian, all reals IEEE-754 binary64
// little-endian, no padding):
//
//   offset  size        field
//   0       8           magic "FNPLMMOD"
//   8       4           format version (1)
//   12      4           kind: 1 = kernel, 2 = neural
//   16      8           d, number of input features (>= 1)
//   24      8           L, length of the metadata in bytes
//   32      L           metadata: UTF-8 JSON text (informational: settings, versions; never
//                       needed to evaluate f)
//   ...     4           preprocessing flag: 0 = none, 1 = present
//   ...     16 d        if present: shift[d] then scale[d]; f is evaluated at (x - shift) / scale
//   kernel: 8 M (>= 1), 8 sigma (> 0), 8 M d centers (row-major, preprocessed space), 8 M alpha
//   neural: 8 k (hidden layers, >= 1), 8 k widths, 8 P parameters in the flat order of mlp.hpp
//           (per layer: weights out x in row-major, then biases), P = MlpShape::n_params()
//   end     8           FNV-1a 64-bit hash of every preceding byte (detects truncation and
//                       corruption)
//
// A reader refuses another magic, a newer version, an unknown kind, sizes that disagree with
// the file length, non-finite numbers and a bad hash, with std::runtime_error naming the
// problem. Later versions may append fields before the hash; version 1 readers refuse them.
#include <cstdint>
#include <string>
#include <vector>

#include "fastnplm/mlp.hpp"
#include "fastnplm/view.hpp"

namespace fastnplm {

enum class ModelKind : std::uint32_t { kernel = 1, neural = 2 };

/// The format version this library writes and the newest it reads.
constexpr std::uint32_t kModelFormatVersion = 1;

class Model {
public:
    /// A kernel model: centers (M, d) in the preprocessed feature space, alpha (M), sigma > 0.
    static Model kernel(MatrixView centers, const double* alpha, double sigma);
    /// A neural model: the network shape and its n_params() parameters (flat order of mlp.hpp).
    static Model neural(const MlpShape& shape, const double* params);

    /// Reads a model file; throws std::runtime_error (unreadable, not a model, corrupt).
    static Model load(const std::string& path);
    /// Writes the model file (replacing path); throws std::runtime_error when it cannot.
    void save(const std::string& path) const;

    /// f is evaluated at (x - shift) / scale: shift, scale have d entries, scale > 0.
    void set_preprocessing(const double* shift, const double* scale);
    /// Free-form JSON text stored with the model (not interpreted).
    void set_metadata(std::string json) { metadata_ = std::move(json); }

    /// f(x) for events x (n, d) in the original feature space: out (n).
    void evaluate(MatrixView x, double* out, int threads = 0) const;

    ModelKind kind() const { return kind_; }
    std::int64_t n_features() const { return d_; }
    const std::string& metadata() const { return metadata_; }
    bool has_preprocessing() const { return !shift_.empty(); }
    const std::vector<double>& shift() const { return shift_; }
    const std::vector<double>& scale() const { return scale_; }
    // kernel models
    double sigma() const { return sigma_; }
    const std::vector<double>& centers() const { return centers_; }  ///< (M, d) row-major
    const std::vector<double>& alpha() const { return alpha_; }      ///< (M)
    // neural models
    const MlpShape& shape() const { return shape_; }
    const std::vector<double>& params() const { return params_; }  ///< (n_params)

private:
    Model() = default;
    ModelKind kind_ = ModelKind::kernel;
    std::int64_t d_ = 0;
    std::string metadata_;
    std::vector<double> shift_, scale_;
    double sigma_ = 0.0;
    std::vector<double> centers_, alpha_;
    MlpShape shape_;
    std::vector<double> params_;
};

}  // namespace fastnplm
