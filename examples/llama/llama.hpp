// ptq::llama — a small, self-contained Llama-architecture harness for real-model tests and
// evaluation of ptq's quantizers.
//
//   * load_checkpoint / save_checkpoint: llama2.c "legacy" checkpoints (version 0: a 7 x int32
//     header followed by raw fp32 tensors, every matrix [out x in] row-major);
//   * Tokenizer: llama2.c tokenizer.bin loader and its BPE encoder / decoder;
//   * forward / sequence_nll: a batched forward pass over a whole sequence (Eigen);
//   * Model::for_each_linear + ActivationHook: access to the seven linear weights of every
//     layer and to the input activations of every linear during the forward pass;
//   * split_stories / encode_stories / evaluate: the evaluation protocol of docs/DESIGN.md §16.
//
// Everything here is header-only and model-specific; the ptq library itself stays
// model-agnostic. Hostile or truncated files raise ptq::llama::FormatError (a ptq::error,
// hence a std::runtime_error) naming the file and the problem; sizes are validated against the file
// length before anything proportional to the header's claims is allocated.
#pragma once

#include <Eigen/Core>

#include <ptq/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

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
    bool has_low_rank() const { return lr_a.size() > 0 && lr_b.size() > 0; }
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

inline std::string quote(const std::filesystem::path& p) {
    // Built with += (GCC 12 gives a false -Wrestrict on "'" + std::string&&, PR 105651).
    std::string s = p.string(), q;
    q.reserve(s.size() + 2);
    q += '\'';
    q += s;
    q += '\'';
    return q;
}

/// a * b with overflow detection on unsigned 64-bit.
inline bool mul_ok(std::uint64_t a, std::uint64_t b, std::uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
inline bool add_ok(std::uint64_t a, std::uint64_t b, std::uint64_t& out) { return !__builtin_add_overflow(a, b, &out); }

/// Reads n floats into dst, throwing FormatError (with the file name) on a short read.
inline void read_floats(std::istream& in, float* dst, std::size_t n, const std::filesystem::path& path,
                        const char* what) {
    in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n * sizeof(float)));
    if (!in || static_cast<std::size_t>(in.gcount()) != n * sizeof(float))
        throw FormatError("ptq::llama: checkpoint " + quote(path) + ": unexpected end of file while reading " + what);
}

inline void read_matrix(std::istream& in, RowMatrix& m, Eigen::Index rows, Eigen::Index cols,
                        const std::filesystem::path& path, const std::string& what) {
    m.resize(rows, cols);
    read_floats(in, m.data(), static_cast<std::size_t>(rows * cols), path, what.c_str());
}

inline void read_vector(std::istream& in, Vector& v, Eigen::Index n, const std::filesystem::path& path,
                        const std::string& what) {
    v.resize(n);
    read_floats(in, v.data(), static_cast<std::size_t>(n), path, what.c_str());
}

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

/// Number of fp32 values a legacy checkpoint with this config holds after its header, or
/// throws FormatError (mentioning `path`) when the config is invalid or the count overflows.
inline std::uint64_t checkpoint_float_count(const Config& c, const std::filesystem::path& path = {}) {
    auto bad = [&](const std::string& what) {
        return FormatError("ptq::llama: checkpoint " + detail::quote(path) + ": invalid header: " + what);
    };
    if (c.dim <= 0) throw bad("dim = " + std::to_string(c.dim) + " must be positive");
    if (c.hidden_dim <= 0) throw bad("hidden_dim = " + std::to_string(c.hidden_dim) + " must be positive");
    if (c.n_layers <= 0) throw bad("n_layers = " + std::to_string(c.n_layers) + " must be positive");
    if (c.n_heads <= 0) throw bad("n_heads = " + std::to_string(c.n_heads) + " must be positive");
    if (c.n_kv_heads <= 0) throw bad("n_kv_heads = " + std::to_string(c.n_kv_heads) + " must be positive");
    if (c.vocab_size <= 0) throw bad("vocab_size must be non-zero");
    if (c.seq_len <= 0) throw bad("seq_len = " + std::to_string(c.seq_len) + " must be positive");
    if (c.dim % c.n_heads != 0)
        throw bad("dim = " + std::to_string(c.dim) + " is not divisible by n_heads = " + std::to_string(c.n_heads));
    if (c.n_heads % c.n_kv_heads != 0)
        throw bad("n_heads = " + std::to_string(c.n_heads) +
                  " is not divisible by n_kv_heads = " + std::to_string(c.n_kv_heads));
    if (c.head_size() % 2 != 0)
        throw bad("head_size = dim / n_heads = " + std::to_string(c.head_size()) + " must be even for RoPE");

    using u64 = std::uint64_t;
    const u64 dim = static_cast<u64>(c.dim), hid = static_cast<u64>(c.hidden_dim), L = static_cast<u64>(c.n_layers),
              kv = static_cast<u64>(c.kv_dim()), vocab = static_cast<u64>(c.vocab_size),
              seq = static_cast<u64>(c.seq_len), half = static_cast<u64>(c.head_size() / 2);
    u64 total = 0;
    bool ok = true;
    auto term = [&](std::initializer_list<u64> factors) {
        u64 p = 1;
        for (u64 f : factors) ok = ok && detail::mul_ok(p, f, p);
        ok = ok && detail::add_ok(total, p, total);
    };
    term({vocab, dim});    // token embedding
    term({L, dim});        // attention rmsnorm
    term({L, dim, dim});   // wq
    term({L, kv, dim});    // wk
    term({L, kv, dim});    // wv
    term({L, dim, dim});   // wo
    term({L, dim});        // ffn rmsnorm
    term({L, hid, dim});   // w1
    term({L, dim, hid});   // w2
    term({L, hid, dim});   // w3
    term({dim});           // final rmsnorm
    term({2, seq, half});  // legacy RoPE tables (freq_cis real, imag)
    if (!c.shared_classifier) term({vocab, dim});
    // Keep byte counts (x4 + header) representable and Eigen indices sane.
    if (!ok || total > (std::numeric_limits<u64>::max() - 64) / 4) throw bad("the implied size overflows");
    return total;
}

/// Loads a llama2.c legacy checkpoint. Throws FormatError on any inconsistency; the file length
/// must be exactly 28 + 4 * checkpoint_float_count(config) bytes.
inline Model load_checkpoint(const std::filesystem::path& path) {
    const std::uintmax_t size = detail::file_size_or_throw(path, "checkpoint");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FormatError("ptq::llama: checkpoint " + detail::quote(path) + ": cannot open");
    std::int32_t h[7];
    if (size < sizeof h)
        throw FormatError("ptq::llama: checkpoint " + detail::quote(path) + ": file is " + std::to_string(size) +
                          " bytes, shorter than the 28-byte header");
    in.read(reinterpret_cast<char*>(h), sizeof h);
    if (!in) throw FormatError("ptq::llama: checkpoint " + detail::quote(path) + ": cannot read the header");

    Model m;
    Config& c = m.config;
    c.dim = h[0];
    c.hidden_dim = h[1];
    c.n_layers = h[2];
    c.n_heads = h[3];
    c.n_kv_heads = h[4];
    // Negative vocab_size signals a separate classifier. INT32_MIN has no positive counterpart.
    if (h[5] == std::numeric_limits<std::int32_t>::min())
        throw FormatError("ptq::llama: checkpoint " + detail::quote(path) +
                          ": invalid header: vocab_size out of range");
    c.shared_classifier = h[5] > 0;
    c.vocab_size = h[5] < 0 ? -h[5] : h[5];
    c.seq_len = h[6];

    const std::uint64_t floats = checkpoint_float_count(c, path);
    const std::uint64_t expected = sizeof h + 4 * floats;
    if (size != expected)
        throw FormatError("ptq::llama: checkpoint " + detail::quote(path) + ": file is " + std::to_string(size) +
                          " bytes but the header (dim " + std::to_string(c.dim) + ", hidden " +
                          std::to_string(c.hidden_dim) + ", layers " + std::to_string(c.n_layers) + ", heads " +
                          std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + ", vocab " +
                          std::to_string(h[5]) + ", seq_len " + std::to_string(c.seq_len) + ") implies " +
                          std::to_string(expected) + (size < expected ? " (truncated file)" : " (trailing bytes)"));

    // From here on every allocation is bounded by the (validated) file length.
    const Eigen::Index dim = c.dim, hid = c.hidden_dim, kv = c.kv_dim(), vocab = c.vocab_size;
    const int L = c.n_layers;
    detail::read_matrix(in, m.token_embedding, vocab, dim, path, "token_embedding");
    m.layers.resize(static_cast<std::size_t>(L));
    auto lname = [](const char* n, int l) { return std::string(n) + "[" + std::to_string(l) + "]"; };
    // The file groups each tensor kind over all layers: rms_att[L], wq[L], wk[L], ...
    for (int l = 0; l < L; ++l) detail::read_vector(in, m.layers[l].rms_att, dim, path, lname("rms_att", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].wq, dim, dim, path, lname("wq", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].wk, kv, dim, path, lname("wk", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].wv, kv, dim, path, lname("wv", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].wo, dim, dim, path, lname("wo", l));
    for (int l = 0; l < L; ++l) detail::read_vector(in, m.layers[l].rms_ffn, dim, path, lname("rms_ffn", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].w1, hid, dim, path, lname("w1", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].w2, dim, hid, path, lname("w2", l));
    for (int l = 0; l < L; ++l) detail::read_matrix(in, m.layers[l].w3, hid, dim, path, lname("w3", l));
    detail::read_vector(in, m.rms_final, dim, path, "rms_final");
    const Eigen::Index half = c.head_size() / 2;
    detail::read_matrix(in, m.legacy_rope_cos, c.seq_len, half, path, "legacy RoPE table (real)");
    detail::read_matrix(in, m.legacy_rope_sin, c.seq_len, half, path, "legacy RoPE table (imag)");
    if (!c.shared_classifier) detail::read_matrix(in, m.classifier, vocab, dim, path, "classifier");
    compute_rope_tables(m);
    return m;
}

/// Writes `m` in the llama2.c legacy format (the inverse of load_checkpoint). The legacy RoPE
/// tables are written from legacy_rope_cos/sin when they have the right shape, else from
/// rope_cos/sin.
inline void save_checkpoint(const Model& m, const std::filesystem::path& path) {
    const Config& c = m.config;
    (void)checkpoint_float_count(c, path);  // validates the config
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("ptq::llama: cannot create checkpoint " + detail::quote(path));
    const std::int32_t h[7] = {c.dim,     c.hidden_dim, c.n_layers,
                               c.n_heads, c.n_kv_heads, c.shared_classifier ? c.vocab_size : -c.vocab_size,
                               c.seq_len};
    out.write(reinterpret_cast<const char*>(h), sizeof h);
    auto put = [&](const auto& x, Eigen::Index rows, Eigen::Index cols, const char* what) {
        if (x.rows() * x.cols() != rows * cols)
            throw std::invalid_argument(std::string("ptq::llama::save_checkpoint: wrong shape for ") + what);
        out.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(rows * cols * sizeof(float)));
    };
    const Eigen::Index dim = c.dim, hid = c.hidden_dim, kv = c.kv_dim(), vocab = c.vocab_size;
    if (m.layers.size() != static_cast<std::size_t>(c.n_layers))
        throw std::invalid_argument("ptq::llama::save_checkpoint: layers.size() != n_layers");
    put(m.token_embedding, vocab, dim, "token_embedding");
    for (const Layer& l : m.layers) put(l.rms_att, dim, 1, "rms_att");
    for (const Layer& l : m.layers) put(l.wq, dim, dim, "wq");
    for (const Layer& l : m.layers) put(l.wk, kv, dim, "wk");
    for (const Layer& l : m.layers) put(l.wv, kv, dim, "wv");
    for (const Layer& l : m.layers) put(l.wo, dim, dim, "wo");
    for (const Layer& l : m.layers) put(l.rms_ffn, dim, 1, "rms_ffn");
    for (const Layer& l : m.layers) put(l.w1, hid, dim, "w1");
    for (const Layer& l : m.layers) put(l.w2, dim, hid, "w2");
    for (const Layer& l : m.layers) put(l.w3, hid, dim, "w3");
    put(m.rms_final, dim, 1, "rms_final");
    const Eigen::Index half = c.head_size() / 2;
    const bool legacy = m.legacy_rope_cos.rows() == c.seq_len && m.legacy_rope_cos.cols() == half &&
                        m.legacy_rope_sin.rows() == c.seq_len && m.legacy_rope_sin.cols() == half;
    put(legacy ? m.legacy_rope_cos : m.rope_cos, c.seq_len, half, "RoPE cos table");
    put(legacy ? m.legacy_rope_sin : m.rope_sin, c.seq_len, half, "RoPE sin table");
    if (!c.shared_classifier) put(m.classifier, vocab, dim, "classifier");
    out.flush();
    if (!out) throw std::runtime_error("ptq::llama: write error on checkpoint " + detail::quote(path));
}

// ---------------------------------------------------------------------------------------------
// Tokenizer (llama2.c tokenizer.bin + its BPE)
// ---------------------------------------------------------------------------------------------

class Tokenizer {
public:
    static constexpr int kBos = 1;
    static constexpr int kEos = 2;
    static constexpr int kByteTokenOffset = 3;  ///< byte b (no token of its own) -> token 3 + b

    /// Loads tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length,
    /// `length` bytes. With vocab_size > 0 exactly that many tokens must be present and nothing
    /// may follow them (a tokenizer of another model is rejected); with vocab_size <= 0 tokens
    /// are read until the end of the file. Every token length must be in [0, max_token_length]
    /// (llama2.c sizes its merge buffer from max_token_length).
    static Tokenizer load(const std::filesystem::path& path, int vocab_size = 0) {
        const std::uintmax_t size = detail::file_size_or_throw(path, "tokenizer");
        auto bad = [&](const std::string& what) {
            return FormatError("ptq::llama: tokenizer " + detail::quote(path) + ": " + what);
        };
        if (size < 4) throw bad("file is " + std::to_string(size) + " bytes, shorter than the 4-byte header");
        if (size > (std::uintmax_t{1} << 31))
            throw bad("file is implausibly large (" + std::to_string(size) + " bytes)");
        std::ifstream in(path, std::ios::binary);
        if (!in) throw bad("cannot open");
        std::vector<char> buf(static_cast<std::size_t>(size));
        in.read(buf.data(), static_cast<std::streamsize>(size));
        if (!in || static_cast<std::uintmax_t>(in.gcount()) != size) throw bad("read error");

        std::size_t pos = 0;
        auto get_i32 = [&](const char* what, std::size_t index) {
            if (buf.size() - pos < 4)
                throw bad("unexpected end of file reading the " + std::string(what) + " of token " +
                          std::to_string(index));
            std::int32_t v;
            std::memcpy(&v, buf.data() + pos, 4);
            pos += 4;
            return v;
        };
        Tokenizer t;
        std::int32_t mtl;
        std::memcpy(&mtl, buf.data(), 4);
        pos = 4;
        if (mtl <= 0) throw bad("max_token_length = " + std::to_string(mtl) + " must be positive");
        t.max_token_length_ = mtl;
        const std::size_t want = vocab_size > 0 ? static_cast<std::size_t>(vocab_size) : 0;
        for (std::size_t i = 0; vocab_size > 0 ? i < want : pos < buf.size(); ++i) {
            if (vocab_size > 0 && pos == buf.size())
                throw bad("has " + std::to_string(i) + " tokens, expected " + std::to_string(vocab_size) +
                          " (truncated file)");
            const std::int32_t score_bits = get_i32("score", i);
            float score;
            std::memcpy(&score, &score_bits, 4);
            const std::int32_t len = get_i32("length", i);
            if (len < 0 || len > mtl)
                throw bad("token " + std::to_string(i) + " has length " + std::to_string(len) +
                          ", outside [0, max_token_length = " + std::to_string(mtl) + "]");
            if (buf.size() - pos < static_cast<std::size_t>(len))
                throw bad("unexpected end of file in the bytes of token " + std::to_string(i));
            t.pieces_.emplace_back(buf.data() + pos, static_cast<std::size_t>(len));
            t.scores_.push_back(score);
            pos += static_cast<std::size_t>(len);
        }
        if (pos != buf.size())
            throw bad(std::to_string(buf.size() - pos) + " trailing bytes after " + std::to_string(vocab_size) +
                      " tokens (tokenizer of a different vocabulary?)");
        if (t.pieces_.size() < kByteTokenOffset + 256)
            throw bad("has " + std::to_string(t.pieces_.size()) + " tokens; the byte fallback needs at least " +
                      std::to_string(kByteTokenOffset + 256));
        t.build_index();
        return t;
    }

    /// Builds a tokenizer from pieces and scores (tests / synthetic vocabularies).
    static Tokenizer from_pieces(std::vector<std::string> pieces, std::vector<float> scores) {
        if (pieces.size() != scores.size())
            throw std::invalid_argument("ptq::llama::Tokenizer: pieces/scores size mismatch");
        if (pieces.size() < kByteTokenOffset + 256)
            throw std::invalid_argument("ptq::llama::Tokenizer: need at least 259 tokens for the byte fallback");
        Tokenizer t;
        t.pieces_ = std::move(pieces);
        t.scores_ = std::move(scores);
        for (const auto& p : t.pieces_)
            t.max_token_length_ = std::max<int>(t.max_token_length_, static_cast<int>(p.size()));
        t.build_index();
        return t;
    }

    int vocab_size() const { return static_cast<int>(pieces_.size()); }
    int max_token_length() const { return max_token_length_; }
    const std::string& piece(int id) const { return pieces_.at(static_cast<std::size_t>(id)); }
    float score(int id) const { return scores_.at(static_cast<std::size_t>(id)); }

    /// Token id of an exact piece, or -1 (first occurrence wins, like llama2.c's linear lookup).
    int lookup(std::string_view s) const {
        auto it = index_.find(std::string(s));
        return it == index_.end() ? -1 : it->second;
    }

    /// llama2.c's encode: [BOS] (if bos), then, for non-empty text, the " " token (the
    /// SentencePiece "dummy prefix"), then one token per UTF-8 character (a lead byte plus at
    /// most 3 continuation bytes) if the character is a piece, else one byte token (3 + byte) per
    /// byte; then repeatedly merge the adjacent pair whose concatenation is a piece with the
    /// highest score (leftmost pair on ties; scores must exceed -1e10 as in run.c), until no
    /// pair merges; then [EOS] (if eos).
    ///
    /// Implementation: a priority queue of candidate merges over a linked list, ordered by
    /// (score desc, original position asc). Positions keep their left-to-right order, so this
    /// picks exactly the pair run.c's O(n^2) rescan picks, in O(n log n).
    std::vector<int> encode(std::string_view text, bool bos = true, bool eos = false) const {
        std::vector<int> out;
        if (bos) out.push_back(kBos);
        std::vector<int> tok;
        tok.reserve(text.size() + 1);
        if (!text.empty()) {
            const int sp = lookup(" ");
            tok.push_back(sp >= 0 ? sp : kByteTokenOffset + ' ');
        }
        for (std::size_t i = 0; i < text.size();) {
            std::size_t j = i + 1;
            // Continuation bytes 10xxxxxx extend the character, up to 4 bytes in total.
            while (j < text.size() && j - i < 4 && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
            const int id = lookup(text.substr(i, j - i));
            if (id >= 0) {
                tok.push_back(id);
            } else {
                for (std::size_t k = i; k < j; ++k)
                    tok.push_back(kByteTokenOffset + static_cast<unsigned char>(text[k]));
            }
            i = j;
        }
        merge(tok);
        out.insert(out.end(), tok.begin(), tok.end());
        if (eos) out.push_back(kEos);
        return out;
    }

    /// The bytes of one token: byte tokens "<0xHH>" become the byte, others their piece. No
    /// leading-space stripping (see decode_piece for llama2.c's printing convention).
    std::string token_bytes(int id) const {
        const std::string& p = piece(id);
        if (p.size() == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') {
            auto hex = [](char ch) -> int {
                if (ch >= '0' && ch <= '9') return ch - '0';
                if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
                if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
                return -1;
            };
            const int hi = hex(p[3]), lo = hex(p[4]);
            if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
        }
        return p;
    }

    /// llama2.c's decode for printing: like token_bytes, but after BOS a leading space is dropped.
    std::string decode_piece(int prev, int id) const {
        std::string s = token_bytes(id);
        if (prev == kBos && !s.empty() && s[0] == ' ') s.erase(0, 1);
        return s;
    }

    /// Concatenated bytes of the tokens, BOS/EOS skipped, leading space kept: for text t,
    /// decode(encode(t)) == " " + t.
    std::string decode(std::span<const int> tokens) const {
        std::string s;
        for (int id : tokens)
            if (id != kBos && id != kEos) s += token_bytes(id);
        return s;
    }

private:
    void build_index() {
        index_.clear();
        index_.reserve(pieces_.size() * 2);
        for (std::size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], static_cast<int>(i));
    }

    void merge(std::vector<int>& tok) const {
        const std::size_t n = tok.size();
        if (n < 2) return;
        std::vector<std::ptrdiff_t> next(n), prev(n);
        std::vector<std::uint32_t> version(n, 0);  // bumped whenever a node's token changes or dies
        std::vector<bool> alive(n, true);
        for (std::size_t i = 0; i < n; ++i) {
            next[i] = static_cast<std::ptrdiff_t>(i) + 1 < static_cast<std::ptrdiff_t>(n)
                          ? static_cast<std::ptrdiff_t>(i) + 1
                          : -1;
            prev[i] = static_cast<std::ptrdiff_t>(i) - 1;
        }
        struct Cand {
            float score;
            std::ptrdiff_t left, right;
            std::uint32_t vl, vr;
            int id;
        };
        auto worse = [](const Cand& a, const Cand& b) {  // "a has lower priority than b"
            if (a.score != b.score) return a.score < b.score;
            return a.left > b.left;
        };
        std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
        std::string buf;
        auto consider = [&](std::ptrdiff_t l) {
            if (l < 0) return;
            const std::ptrdiff_t r = next[static_cast<std::size_t>(l)];
            if (r < 0) return;
            buf = pieces_[static_cast<std::size_t>(tok[static_cast<std::size_t>(l)])];
            buf += pieces_[static_cast<std::size_t>(tok[static_cast<std::size_t>(r)])];
            const int id = lookup(buf);
            if (id < 0) return;
            const float s = scores_[static_cast<std::size_t>(id)];
            if (!(s > -1e10f)) return;  // run.c starts from best_score = -1e10 with a strict '>'
            heap.push(Cand{s, l, r, version[static_cast<std::size_t>(l)], version[static_cast<std::size_t>(r)], id});
        };
        for (std::size_t i = 0; i + 1 < n; ++i) consider(static_cast<std::ptrdiff_t>(i));
        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            const auto l = static_cast<std::size_t>(c.left), r = static_cast<std::size_t>(c.right);
            if (!alive[l] || !alive[r] || next[l] != c.right || version[l] != c.vl || version[r] != c.vr) continue;
            tok[l] = c.id;
            ++version[l];
            alive[r] = false;
            ++version[r];
            next[l] = next[r];
            if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
            consider(prev[l]);
            consider(c.left);
        }
        std::vector<int> out;
        out.reserve(n);
        for (std::ptrdiff_t i = 0; i >= 0; i = next[static_cast<std::size_t>(i)])
            out.push_back(tok[static_cast<std::size_t>(i)]);
        tok.swap(out);
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int> index_;
    int max_token_length_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Forward pass
// ---------------------------------------------------------------------------------------------

/// Called during forward() with the input activations X [tokens x in] of each linear, just
/// before the product X * W^T: (layer, "wq".."w3", X). wq/wk/wv see the same X (attention
/// RMSNorm output), as do w1/w3 (FFN RMSNorm output); wo sees the attention output, w2 the
/// gated SwiGLU activation silu(w1 x) * (w3 x).
using ActivationHook = std::function<void(int layer, std::string_view linear, const RowMatrix& x)>;

namespace detail {

/// RMSNorm per row: y = w * x / sqrt(mean(x^2) + 1e-5). Sum of squares in float (as run.c).
inline void rmsnorm_rows(const RowMatrix& x, const Vector& w, RowMatrix& y) {
    y.resize(x.rows(), x.cols());
    const float n = static_cast<float>(x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const float ss = x.row(t).squaredNorm() / n + 1e-5f;
        const float inv = 1.0f / std::sqrt(ss);
        y.row(t) = (x.row(t).array() * inv) * w.transpose().array();
    }
}

/// Rotates adjacent pairs (2i, 2i+1) of every head in place: row t is position t.
inline void apply_rope(RowMatrix& x, const Model& m) {
    const int hs = m.config.head_size(), half = hs / 2;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        float* row = x.row(t).data();
        const float* cs = m.rope_cos.row(t).data();
        const float* sn = m.rope_sin.row(t).data();
        for (Eigen::Index h0 = 0; h0 < x.cols(); h0 += hs)
            for (int i = 0; i < half; ++i) {
                float& a = row[h0 + 2 * i];
                float& b = row[h0 + 2 * i + 1];
                const float a0 = a, b0 = b;
                a = a0 * cs[i] - b0 * sn[i];
                b = a0 * sn[i] + b0 * cs[i];
            }
    }
}

}  // namespace detail

namespace detail {

/// Scratch buffers of the forward pass (reused across layers).
struct ForwardScratch {
    RowMatrix xn, q, k, v, att, scores, h1, h3, xs, xs2, xb;
};

/// The input of linear `idx` after its extras: A(x * diag(inv_scale)). Returns `x` itself
/// (no copy) when there is neither a scale nor an activation quantizer.
inline const RowMatrix& prepare_input(const Model& m, const LinearExtras& e, const RowMatrix& x, RowMatrix& buf) {
    if (e.inv_scale.size() == 0 && !m.act_quant) return x;
    if (e.inv_scale.size() != 0) {
        if (e.inv_scale.size() != x.cols())
            throw std::invalid_argument("ptq::llama::forward: inv_scale has " + std::to_string(e.inv_scale.size()) +
                                        " entries, the input " + std::to_string(x.cols()) + " columns");
        buf = x * e.inv_scale.asDiagonal();
    } else {
        buf = x;
    }
    if (m.act_quant) m.act_quant(buf);
    return buf;
}

/// out = x' W^T (+ A(x' B^T) A^T), x' already prepared.
inline void linear_product(const Model& m, const LinearExtras& e, const RowMatrix& xp, const RowMatrix& w,
                           RowMatrix& out, RowMatrix& xb) {
    out.noalias() = xp * w.transpose();
    if (e.has_low_rank()) {
        xb.noalias() = xp * e.lr_b.transpose();
        if (m.act_quant) m.act_quant(xb);
        out.noalias() += xb * e.lr_a.transpose();
    }
}

inline bool same_scale(const LinearExtras& a, const LinearExtras& b) {
    return a.inv_scale.size() == b.inv_scale.size() && (a.inv_scale.size() == 0 || a.inv_scale == b.inv_scale);
}

}  // namespace detail

/// Runs transformer block `l` on the hidden states x [T x dim] (rows = positions 0..T-1) in
/// place. hook (if any) sees the input of each linear before its extras (scale, activation
/// quantization). If stop_after is a linear index 0..6, the block returns right after the hook
/// for that linear was called (x is then partially updated: use a copy) — a cheap way to
/// capture one linear's inputs.
inline void layer_forward(const Model& m, int l, RowMatrix& x, const ActivationHook& hook = {}, int stop_after = -1,
                          detail::ForwardScratch* scratch = nullptr) {
    const Config& c = m.config;
    const auto T = x.rows();
    detail::ForwardScratch local;
    detail::ForwardScratch& s = scratch ? *scratch : local;
    const Layer& L = m.layers[static_cast<std::size_t>(l)];
    const LinearExtras* E = L.extras;
    const int hs = c.head_size(), kv_mul = c.kv_mul();
    const float inv_sqrt_hs = 1.0f / std::sqrt(static_cast<float>(hs));
    auto call = [&](int idx, const RowMatrix& in) {
        if (hook) hook(l, kLinearNames[idx], in);
        return idx == stop_after;
    };
    // ---- attention
    detail::rmsnorm_rows(x, L.rms_att, s.xn);
    if (call(0, s.xn) || call(1, s.xn) || call(2, s.xn)) return;
    {
        const RowMatrix& xq = detail::prepare_input(m, E[0], s.xn, s.xs);
        detail::linear_product(m, E[0], xq, L.wq, s.q, s.xb);
        const RowMatrix& xk = detail::same_scale(E[0], E[1]) ? xq : detail::prepare_input(m, E[1], s.xn, s.xs2);
        detail::linear_product(m, E[1], xk, L.wk, s.k, s.xb);
        const RowMatrix& xv = detail::same_scale(E[1], E[2])   ? xk
                              : detail::same_scale(E[0], E[2]) ? xq
                                                               : detail::prepare_input(m, E[2], s.xn, s.xs2);
        detail::linear_product(m, E[2], xv, L.wv, s.v, s.xb);
    }
    detail::apply_rope(s.q, m);
    detail::apply_rope(s.k, m);
    s.att.resize(T, c.dim);
    s.scores.resize(T, T);
    for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / kv_mul;  // kv head shared by kv_mul consecutive query heads
        s.scores.noalias() = s.q.middleCols(h * hs, hs) * s.k.middleCols(g * hs, hs).transpose();
        for (Eigen::Index i = 0; i < T; ++i) {
            auto row = s.scores.row(i);
            auto valid = row.head(i + 1);  // causal: keys 0..i
            valid *= inv_sqrt_hs;
            const float mx = valid.maxCoeff();
            valid = (valid.array() - mx).exp();
            valid /= valid.sum();
            row.tail(T - i - 1).setZero();
        }
        s.att.middleCols(h * hs, hs).noalias() = s.scores * s.v.middleCols(g * hs, hs);
    }
    if (call(3, s.att)) return;
    {
        const RowMatrix& xo = detail::prepare_input(m, E[3], s.att, s.xs);
        if (E[3].has_low_rank()) {
            detail::linear_product(m, E[3], xo, L.wo, s.h1, s.xb);
            x += s.h1;
        } else {
            x.noalias() += xo * L.wo.transpose();
        }
    }
    // ---- SwiGLU FFN: w2(silu(w1 x) * w3 x)
    detail::rmsnorm_rows(x, L.rms_ffn, s.xn);
    if (call(4, s.xn) || call(6, s.xn)) return;
    {
        const RowMatrix& x1 = detail::prepare_input(m, E[4], s.xn, s.xs);
        detail::linear_product(m, E[4], x1, L.w1, s.h1, s.xb);
        const RowMatrix& x3 = detail::same_scale(E[4], E[6]) ? x1 : detail::prepare_input(m, E[6], s.xn, s.xs2);
        detail::linear_product(m, E[6], x3, L.w3, s.h3, s.xb);
    }
    // silu(a) = a * sigmoid(a) = a / (1 + exp(-a)); for a -> -inf exp overflows to inf and the
    // quotient is -0, the correct limit.
    s.h1.array() = s.h1.array() / (1.0f + (-s.h1.array()).exp()) * s.h3.array();
    if (call(5, s.h1)) return;
    {
        const RowMatrix& x2 = detail::prepare_input(m, E[5], s.h1, s.xs);
        if (E[5].has_low_rank()) {
            detail::linear_product(m, E[5], x2, L.w2, s.h3, s.xb);
            x += s.h3;
        } else {
            x.noalias() += x2 * L.w2.transpose();
        }
    }
}

/// The token embeddings of `tokens` [T x dim] (the input of layer 0). Throws on bad ids or
/// T > seq_len.
inline RowMatrix embed(const Model& m, std::span<const int> tokens) {
    const Config& c = m.config;
    const auto T = static_cast<Eigen::Index>(tokens.size());
    if (T > c.seq_len)
        throw std::invalid_argument("ptq::llama::forward: " + std::to_string(T) + " tokens exceed seq_len " +
                                    std::to_string(c.seq_len));
    RowMatrix x(T, c.dim);
    for (Eigen::Index t = 0; t < T; ++t) {
        const int id = tokens[static_cast<std::size_t>(t)];
        if (id < 0 || id >= c.vocab_size)
            throw std::out_of_range("ptq::llama::forward: token id " + std::to_string(id) + " outside [0, " +
                                    std::to_string(c.vocab_size) + ")");
        x.row(t) = m.token_embedding.row(id);
    }
    return x;
}

/// Runs the model on `tokens` (positions 0..T-1, T <= seq_len) and returns the logits
/// [T x vocab] (float). Row t holds the next-token logits after tokens[0..t].
/// Numerics: float32 storage and Eigen float32 GEMMs; attention softmax subtracts the row max.
/// The linears use their LinearExtras and Model::act_quant (see there); the classifier is
/// always the plain fp32 product.
inline RowMatrix forward(const Model& m, std::span<const int> tokens, const ActivationHook& hook = {}) {
    const Config& c = m.config;
    if (tokens.empty()) return RowMatrix(0, c.vocab_size);
    RowMatrix x = embed(m, tokens);
    detail::ForwardScratch scratch;
    for (int l = 0; l < c.n_layers; ++l) layer_forward(m, l, x, hook, -1, &scratch);
    RowMatrix xn;
    detail::rmsnorm_rows(x, m.rms_final, xn);
    return xn * m.output_weights().transpose();
}

/// Sum over t = 0..T-2 of -log softmax(logits[t])[tokens[t+1]], in double. Each row's
/// log-sum-exp subtracts the row max (float exp, double log and accumulation).
inline double sequence_nll(const Model& m, std::span<const int> tokens, const ActivationHook& hook = {}) {
    if (tokens.size() < 2) return 0.0;
    const RowMatrix logits = forward(m, tokens.first(tokens.size() - 1), hook);
    double nll = 0.0;
    for (Eigen::Index t = 0; t < logits.rows(); ++t) {
        const auto row = logits.row(t);
        const float mx = row.maxCoeff();
        const double lse = static_cast<double>(mx) + std::log(static_cast<double>((row.array() - mx).exp().sum()));
        nll += lse - static_cast<double>(row(tokens[static_cast<std::size_t>(t) + 1]));
    }
    return nll;
}

/// Greedy (argmax) continuation of `prompt` for `steps` new tokens; stops early at BOS/EOS or
/// when seq_len is reached. Returns the new tokens only.
inline std::vector<int> generate_greedy(const Model& m, std::vector<int> prompt, int steps) {
    std::vector<int> out;
    while (static_cast<int>(out.size()) < steps && static_cast<int>(prompt.size()) < m.config.seq_len) {
        const RowMatrix logits = forward(m, prompt);
        Eigen::Index best;
        logits.row(logits.rows() - 1).maxCoeff(&best);
        const int id = static_cast<int>(best);
        if (id == Tokenizer::kBos || id == Tokenizer::kEos) break;
        out.push_back(id);
        prompt.push_back(id);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Evaluation protocol (docs/DESIGN.md §16)
// ---------------------------------------------------------------------------------------------

inline std::string read_text_file(const std::filesystem::path& path) {
    const std::uintmax_t size = detail::file_size_or_throw(path, "text file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FormatError("ptq::llama: text file " + detail::quote(path) + ": cannot open");
    std::string s(static_cast<std::size_t>(size), '\0');
    in.read(s.data(), static_cast<std::streamsize>(size));
    if (!in) throw FormatError("ptq::llama: text file " + detail::quote(path) + ": read error");
    return s;
}

/// Splits on lines equal to "<|endoftext|>" (a trailing '\r' is tolerated), strips ASCII
/// whitespace from both ends of every story and drops empty ones.
inline std::vector<std::string> split_stories(std::string_view text, std::string_view separator = "<|endoftext|>") {
    std::vector<std::string> stories;
    auto is_space = [](char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
    };
    auto flush = [&](std::string_view s) {
        std::size_t b = 0, e = s.size();
        while (b < e && is_space(s[b])) ++b;
        while (e > b && is_space(s[e - 1])) --e;
        if (e > b) stories.emplace_back(s.substr(b, e - b));
    };
    std::size_t story_begin = 0, line_begin = 0;
    while (line_begin <= text.size()) {
        std::size_t line_end = text.find('\n', line_begin);
        const bool last = line_end == std::string_view::npos;
        if (last) line_end = text.size();
        std::string_view line = text.substr(line_begin, line_end - line_begin);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line == separator) {
            flush(text.substr(story_begin, line_begin - story_begin));
            story_begin = last ? text.size() : line_end + 1;
        }
        if (last) break;
        line_begin = line_end + 1;
    }
    flush(text.substr(story_begin));
    return stories;
}

/// Encodes each story with BOS (and the dummy prefix) and truncates it to max_tokens tokens.
inline std::vector<std::vector<int>> encode_stories(const Tokenizer& tok, const std::vector<std::string>& stories,
                                                    int max_tokens) {
    std::vector<std::vector<int>> docs;
    docs.reserve(stories.size());
    for (const auto& s : stories) {
        std::vector<int> ids = tok.encode(s, /*bos=*/true);
        if (static_cast<int>(ids.size()) > max_tokens) ids.resize(static_cast<std::size_t>(max_tokens));
        docs.push_back(std::move(ids));
    }
    return docs;
}

struct EvalResult {
    std::size_t sequences = 0;
    std::size_t predicted_tokens = 0;  ///< sum over sequences of (length - 1)
    double nll_sum = 0.0;              ///< natural log
    double mean_nll() const { return predicted_tokens ? nll_sum / static_cast<double>(predicted_tokens) : 0.0; }
    double perplexity() const { return std::exp(mean_nll()); }
};

/// Mean next-token NLL over all sequences. progress(done, total) is called after each one.
inline EvalResult evaluate(const Model& m, const std::vector<std::vector<int>>& docs, const ActivationHook& hook = {},
                           const std::function<void(std::size_t, std::size_t)>& progress = {}) {
    EvalResult r;
    for (std::size_t i = 0; i < docs.size(); ++i) {
        const auto& d = docs[i];
        if (d.size() >= 2) {
            r.nll_sum += sequence_nll(m, d, hook);
            r.predicted_tokens += d.size() - 1;
        }
        ++r.sequences;
        if (progress) progress(i + 1, docs.size());
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// Calibration data
// ---------------------------------------------------------------------------------------------

/// Calibration token sequences from `text`, at most `token_budget` tokens in total (each token
/// fed to the model counts), every sequence at most seq_len tokens:
///  - text with "<|endoftext|>" separator lines (TinyStories): stories in file order, each
///    encoded with BOS and truncated to seq_len, taken whole while they fit; the last one is
///    cut so that the total equals the budget exactly (when the text is long enough);
///  - any other text (WikiText-2's test set is one long document): encoded once without BOS
///    and cut into consecutive windows of seq_len - 1 tokens, each prefixed with BOS (the model
///    was trained with BOS at the start of every sequence), the last window cut to the budget.
inline std::vector<std::vector<int>> calibration_sequences(const Tokenizer& tok, std::string_view text, int seq_len,
                                                           std::size_t token_budget) {
    if (seq_len < 2) throw std::invalid_argument("ptq::llama::calibration_sequences: seq_len must be >= 2");
    std::vector<std::vector<int>> seqs;
    std::size_t total = 0;
    auto take = [&](std::vector<int> ids) {
        if (ids.size() < 2 || total >= token_budget) return;
        if (ids.size() > token_budget - total) ids.resize(token_budget - total);
        if (ids.size() < 2) return;
        total += ids.size();
        seqs.push_back(std::move(ids));
    };
    if (text.find("<|endoftext|>") != std::string_view::npos) {
        for (const auto& story : split_stories(text)) {
            if (total >= token_budget) break;
            std::vector<int> ids = tok.encode(story, /*bos=*/true);
            if (static_cast<int>(ids.size()) > seq_len) ids.resize(static_cast<std::size_t>(seq_len));
            take(std::move(ids));
        }
        return seqs;
    }
    // One long document: encode a prefix large enough for the budget (>= 1 byte per token; the
    // encoder's dummy-prefix space only affects the very first token), then cut windows.
    const std::size_t window = static_cast<std::size_t>(seq_len) - 1;
    std::size_t bytes = std::min(text.size(), std::max<std::size_t>(4096, token_budget * 8));
    std::vector<int> stream;
    while (true) {
        stream = tok.encode(text.substr(0, bytes), /*bos=*/false);
        // Tokens at the cut may differ from a full encoding; keep a safety margin of 16 tokens.
        if (bytes == text.size() || stream.size() > token_budget + 16) break;
        bytes = std::min(text.size(), bytes * 2);
    }
    if (bytes < text.size() && stream.size() > 16) stream.resize(stream.size() - 16);
    for (std::size_t b = 0; b < stream.size() && total < token_budget; b += window) {
        std::vector<int> ids{Tokenizer::kBos};
        const std::size_t e = std::min(stream.size(), b + window);
        ids.insert(ids.end(), stream.begin() + static_cast<std::ptrdiff_t>(b),
                   stream.begin() + static_cast<std::ptrdiff_t>(e));
        take(std::move(ids));
    }
    return seqs;
}

}  // namespace ptq::llama
