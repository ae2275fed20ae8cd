// ptq::llama::Model: the Llama-architecture model of the ptq tool (llama2.c conventions:
// every matrix [out x in] row-major, RoPE on adjacent pairs), its configuration, the seven
// linears of a block with their optional quantization extras, and FormatError, the error of
// every model-file reader of the tool.
#pragma once

#include <Eigen/Core>

#include <ptq/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace ptq::llama {

/// Row-major float matrix: weights are [out x in], activations [tokens x features].
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

/// A malformed, truncated or unreadable checkpoint / tokenizer file (a ptq::error, itself a
/// std::runtime_error).
class FormatError : public ptq::error {
public:
    using ptq::error::error;
};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

struct Config {
    int dim = 0;         ///< model width
    int hidden_dim = 0;  ///< FFN width
    int n_layers = 0;
    int n_heads = 0;                ///< query heads
    int n_kv_heads = 0;             ///< key/value heads (grouped-query attention when < n_heads)
    int vocab_size = 0;             ///< always positive here; the file stores -vocab for a separate classifier
    int seq_len = 0;                ///< maximum sequence length (length of the RoPE tables)
    bool shared_classifier = true;  ///< classifier == token embedding

    int head_size() const { return dim / n_heads; }
    int kv_dim() const { return head_size() * n_kv_heads; }
    int kv_mul() const { return n_heads / n_kv_heads; }  ///< query heads per kv head
};

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// Names of the seven linear layers of a transformer block, in checkpoint order.
inline constexpr std::string_view kLinearNames[7] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};

/// Index 0..6 of a linear name in kLinearNames; throws std::invalid_argument otherwise.
inline int linear_index(std::string_view name) {
    for (int i = 0; i < 7; ++i)
        if (kLinearNames[i] == name) return i;
    throw std::invalid_argument("ptq::llama::linear_index: unknown linear '" + std::string(name) + "'");
}

/// Shape [out x in] of linear `name` ("wq" ... "w3") under config `c`.
inline std::pair<int, int> linear_shape(const Config& c, std::string_view name) {
    switch (linear_index(name)) {
        case 0:
        case 3: return {c.dim, c.dim};  // wq, wo
        case 1:
        case 2: return {c.kv_dim(), c.dim};     // wk, wv
        case 5: return {c.dim, c.hidden_dim};   // w2
        default: return {c.hidden_dim, c.dim};  // w1, w3
    }
}

/// In-place fake quantizer of the input activations X [tokens x in] of a linear (empty: none).
using ActivationQuantizer = std::function<void(RowMatrix& x)>;

struct PackedLinear;

/// Optional quantization extras of one linear, applied by the forward pass:
///   x' = A(x * diag(inv_scale)),   y = x' W^T + A(x' lr_b^T) lr_a^T
/// where A is Model::act_quant (identity when empty), inv_scale = 1/s the per-input-channel
/// scale of a SmoothQuant/AWQ transformation (W then holds Q(W diag(s))), and lr_a [out x k],
/// lr_b [k x in] the low-rank error correction of LQER / L2QER / LoRC. All empty by default:
/// y = x W^T, the plain fp32 layer. Applying 1/s explicitly is mathematically the same as
/// folding it into the preceding RMSNorm weight (what a deployment does), and also exact for
/// wo / w2 and for GQA's shared k/v inputs, where folding would need the previous linear.
struct LinearExtras {
    Vector inv_scale;  ///< [in] or empty
    RowMatrix lr_a;    ///< [out x k] or empty
    RowMatrix lr_b;    ///< [k x in] or empty
    /// When set, the forward pass computes x' W^T from the weights' packed codes
    /// (PackedLinear::product) instead of the float matrix, which still holds the same weights
    /// dequantized (for `--dense`, the quantizers and the writers).
    std::shared_ptr<const PackedLinear> packed;
    bool has_low_rank() const { return lr_a.size() > 0 && lr_b.size() > 0; }
};

/// A linear's weights as a quantized file stores them, multiplied without dequantizing:
/// product(x) = x W^T [tokens x out] for x [tokens x in] through ptq::gemm on the packed codes
/// (fused dequantize-and-dot per weight row; error bound in ptq/kernel/gemv.hpp dot_row).
struct PackedLinear {
    std::string type;  ///< the file's type name, e.g. "Q4_0"
    std::function<RowMatrix(const RowMatrix& x)> product;
};

struct Layer {
    Vector rms_att;          ///< [dim]
    Vector rms_ffn;          ///< [dim]
    RowMatrix wq;            ///< [dim x dim]
    RowMatrix wk;            ///< [kv_dim x dim]
    RowMatrix wv;            ///< [kv_dim x dim]
    RowMatrix wo;            ///< [dim x dim]
    RowMatrix w1;            ///< [hidden x dim]
    RowMatrix w2;            ///< [dim x hidden]
    RowMatrix w3;            ///< [hidden x dim]
    LinearExtras extras[7];  ///< per linear, indexed like kLinearNames

    /// The linear weight called `name` ("wq" ... "w3"); throws std::invalid_argument otherwise.
    RowMatrix& linear(std::string_view name) {
        if (name == "wq") return wq;
        if (name == "wk") return wk;
        if (name == "wv") return wv;
        if (name == "wo") return wo;
        if (name == "w1") return w1;
        if (name == "w2") return w2;
        if (name == "w3") return w3;
        throw std::invalid_argument("ptq::llama::Layer::linear: unknown linear '" + std::string(name) + "'");
    }
    const RowMatrix& linear(std::string_view name) const { return const_cast<Layer*>(this)->linear(name); }
};

struct Model {
    Config config;
    RowMatrix token_embedding;  ///< [vocab x dim]
    std::vector<Layer> layers;
    Vector rms_final;      ///< [dim]
    RowMatrix classifier;  ///< [vocab x dim]; empty when config.shared_classifier
    /// RoPE tables used by the forward pass, [seq_len x head_size/2]:
    /// angle(pos, i) = pos * theta^(-2i/head_size), theta = 10000, computed in double.
    RowMatrix rope_cos, rope_sin;
    /// The two legacy tables stored in the file (freq_cis real / imag, same shape). Not used by
    /// the forward pass; kept so they can be written back and checked against rope_cos/sin.
    RowMatrix legacy_rope_cos, legacy_rope_sin;
    /// Fake quantizer applied to the input of every linear of every layer (not the classifier);
    /// empty = unquantized activations.
    ActivationQuantizer act_quant;
    /// Online orthogonal transform of w2's input (QuaRot): the forward pass multiplies
    /// silu(w1 x) * (w3 x) of every layer by this [hidden x hidden] matrix R before w2, whose
    /// weights then hold W2 R (rotation.hpp). Empty = none. No model file can hold it: the
    /// writers refuse a model that has one (detail::require_no_online_transform).
    RowMatrix w2_input_rotation;

    const RowMatrix& output_weights() const { return config.shared_classifier ? token_embedding : classifier; }

    /// Calls f(layer_index, name, W) for the seven linear weights of every layer, in checkpoint
    /// order (wq, wk, wv, wo, w1, w2, w3). W is a RowMatrix& [out x in] that f may replace
    /// (it must keep its shape). The embedding and the classifier are not visited.
    template <class F>
    void for_each_linear(F&& f) {
        for (int l = 0; l < static_cast<int>(layers.size()); ++l)
            for (std::string_view name : kLinearNames) {
                RowMatrix& w = layers[static_cast<std::size_t>(l)].linear(name);
                const Eigen::Index rows = w.rows(), cols = w.cols();
                f(l, name, w);
                if (w.rows() != rows || w.cols() != cols)
                    throw std::logic_error("ptq::llama::Model::for_each_linear: callback changed the shape of layer " +
                                           std::to_string(l) + " " + std::string(name));
            }
    }
    template <class F>
    void for_each_linear(F&& f) const {
        for (int l = 0; l < static_cast<int>(layers.size()); ++l)
            for (std::string_view name : kLinearNames) f(l, name, layers[static_cast<std::size_t>(l)].linear(name));
    }
};

/// Reads the fp32 weights of the seven linears of layer `l` into `L` (each [out x in] of
/// linear_shape), for a model whose linears stay in the input file until they are needed (the
/// streaming `ptq quantize`: see load_model_file). Throws ptq::file_error naming the file and
/// tensor on a read error.
using LayerLoader = std::function<void(int l, Layer& L)>;

/// Fills model.rope_cos / rope_sin for config.seq_len positions.
inline void compute_rope_tables(Model& m) {
    const int hs = m.config.head_size(), half = hs / 2, n = m.config.seq_len;
    m.rope_cos.resize(n, half);
    m.rope_sin.resize(n, half);
    for (int i = 0; i < half; ++i) {
        // llama2.c: freq = 1 / 10000^(head_dim / head_size) with head_dim = 2i (the even index of
        // the pair (2i, 2i+1) inside the head). Double precision, rounded once to float.
        const double freq = std::pow(10000.0, -static_cast<double>(2 * i) / static_cast<double>(hs));
        for (int p = 0; p < n; ++p) {
            const double a = static_cast<double>(p) * freq;
            m.rope_cos(p, i) = static_cast<float>(std::cos(a));
            m.rope_sin(p, i) = static_cast<float>(std::sin(a));
        }
    }
}

namespace detail {

/// 'path' in quotes, for error messages.
inline std::string quote(const std::filesystem::path& p) {
    // Built with += (GCC 12 gives a false -Wrestrict on "'" + std::string&&, PR 105651).
    std::string s = p.string(), q;
    q.reserve(s.size() + 2);
    q += '\'';
    q += s;
    q += '\'';
    return q;
}

/// Throws ptq::invalid_argument naming `writer` when m has an online transform that a model
/// file cannot express (Model::w2_input_rotation).
inline void require_no_online_transform(const Model& m, const char* writer) {
    if (m.w2_input_rotation.size() != 0)
        throw ptq::invalid_argument(std::string("ptq::llama::") + writer +
                                    ": the model has an online rotation of the w2 input (recipe rot-online=1), "
                                    "which no model file can hold; use rot-online=0 to write a file");
}

/// Drops the resident pages of `bytes`, a part of a read-only memory-mapped input file, once
/// they were converted (madvise MADV_DONTNEED on the whole pages inside it): the mapping stays
/// valid and reads the file again if touched, but no longer counts in the resident set. A
/// failure of madvise only leaves the pages resident.
inline void release_mapped_pages(std::span<const std::byte> bytes) {
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data());
    const std::uintptr_t first = (begin + page - 1) / page * page, last = (begin + bytes.size()) / page * page;
    if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

/// Size of a file the tool is about to read, or FormatError naming it (kind: "checkpoint", ...).
inline std::uintmax_t file_size_or_throw(const std::filesystem::path& path, const char* kind) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw FormatError(std::string("ptq::llama: ") + kind + " " + quote(path) + ": not found or not a regular file");
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec)
        throw FormatError(std::string("ptq::llama: ") + kind + " " + quote(path) +
                          ": cannot get size: " + ec.message());
    return size;
}

}  // namespace detail

}  // namespace ptq::llama
