// ptq::llama <-> GGUF: the harness's Llama model and llama2.c tokenizer as a GGUF v3 file that
// llama.cpp loads (architecture "llama", SentencePiece-style vocabulary "llama").
//
// Layout written (what llama.cpp's loader, src/llama-model.cpp / llama-vocab.cpp, reads):
//   * metadata: general.architecture = "llama", general.name, general.file_type;
//     llama.{context_length, embedding_length, block_count, feed_forward_length,
//     attention.head_count, attention.head_count_kv, rope.dimension_count, vocab_size} as U32
//     (llama.cpp refuses other integer widths), llama.attention.layer_norm_rms_epsilon and
//     llama.rope.freq_base as F32;
//   * tokenizer.ggml.model = "llama", tokenizer.ggml.tokens / scores (F32) / token_type (I32),
//     bos / eos / unknown ids (U32), add_bos_token = true, add_eos_token = false. Pieces follow
//     llama.cpp's own llama2.c converter (examples/convert-llama2c-to-ggml): token 0 is
//     "<unk>" (UNKNOWN), 1 "<s>" and 2 "</s>" (CONTROL), "<0xHH>" pieces are BYTE, empty pieces
//     CONTROL, all others NORMAL, and every space becomes U+2581 ("▁"), SentencePiece's
//     whitespace symbol;
//   * tensors (ggml `ne` is fastest-first, so a [out x in] weight has ne = [in, out]):
//     token_embd.weight, output_norm.weight, output.weight (only for a separate classifier:
//     llama.cpp reuses token_embd when it is absent), blk.N.{attn_norm, attn_q, attn_k, attn_v,
//     attn_output, ffn_norm, ffn_gate (w1), ffn_down (w2), ffn_up (w3)}.weight.
// RoPE: llama2.c and llama.cpp's LLAMA rope both rotate adjacent pairs (2i, 2i+1), so the q/k
// rows are stored as they are (no permutation, unlike the Hugging Face layout in hf_model.hpp).
//
// The reader accepts exactly this model family: a missing key or tensor, a wrong type or shape,
// another architecture or hyper-parameters the harness's forward pass does not implement
// (RMSNorm eps other than 1e-5, RoPE base other than 10000, partial rotary dimensions),
// vocabularies without llama2.c's fixed ids (BOS 1, EOS 2, byte b at 3 + b) and tensors the
// model does not use are all refused with a ptq::file_error naming the file and the key or tensor.
#pragma once

#include "llama2c_checkpoint.hpp"
#include "llama2c_tokenizer.hpp"
#include "model.hpp"

#include <ptq/error.hpp>
#include <ptq/io/ggml_dequantize.hpp>
#include <ptq/io/gguf.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ptq::llama {

/// GGUF name of the tensor behind linear `name` ("wq" ... "w3") of layer `layer`.
inline std::string gguf_linear_name(int layer, std::string_view name) {
    static constexpr std::string_view kGguf[7] = {"attn_q",   "attn_k",   "attn_v", "attn_output",
                                                  "ffn_gate", "ffn_down", "ffn_up"};
    return "blk." + std::to_string(layer) + "." + std::string(kGguf[linear_index(name)]) + ".weight";
}

/// llama.cpp's token types (llama_token_type / gguf-py TokenType).
enum class GgufTokenType : std::int32_t {
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6
};

namespace detail {

inline constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's "▁"

/// ' ' -> U+2581 (llama.cpp's llama_escape_whitespaces).
inline std::string escape_whitespace(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == ' ') out += kSpaceSymbol;
        else out += c;
    }
    return out;
}
/// U+2581 -> ' ' (the inverse).
inline std::string unescape_whitespace(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        if (s.substr(i, kSpaceSymbol.size()) == kSpaceSymbol) {
            out += ' ';
            i += kSpaceSymbol.size();
        } else {
            out += s[i++];
        }
    }
    return out;
}

/// True for "<0xHH>" with two upper- or lower-case hex digits; sets the byte.
inline bool is_byte_piece(std::string_view p, unsigned& byte) {
    if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return false;
    unsigned v = 0;
    for (char c : p.substr(3, 2)) {
        v <<= 4;
        if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
        else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
        else return false;
    }
    byte = v;
    return true;
}

inline std::span<const std::byte> float_bytes(const float* p, Eigen::Index n) {
    return {reinterpret_cast<const std::byte*>(p), static_cast<std::size_t>(n) * sizeof(float)};
}

}  // namespace detail

/// The GGUF vocabulary of a llama2.c tokenizer (see the file comment): pieces, scores, types.
struct GgufVocabulary {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<std::int32_t> types;
};

inline GgufVocabulary gguf_vocabulary(const Llama2cTokenizer& tok) {
    GgufVocabulary v;
    const int n = tok.vocab_size();
    for (int id = 0; id < n; ++id) {
        std::string text = tok.piece(id);
        GgufTokenType type = GgufTokenType::normal;
        unsigned byte = 0;
        if (id == 0) {
            text = "<unk>";
            type = GgufTokenType::unknown;
        } else if (id == Tokenizer::kBos) {
            text = "<s>";
            type = GgufTokenType::control;
        } else if (id == Tokenizer::kEos) {
            text = "</s>";
            type = GgufTokenType::control;
        } else if (text.empty()) {
            type = GgufTokenType::control;
        } else if (detail::is_byte_piece(text, byte)) {
            type = GgufTokenType::byte;
        }
        v.tokens.push_back(detail::escape_whitespace(text));
        v.scores.push_back(tok.score(id));
        v.types.push_back(static_cast<std::int32_t>(type));
    }
    return v;
}

/// One linear weight as stored in the file: a ggml type and exactly its bytes.
struct GgufEncodedWeight {
    io::GgmlType type = io::GgmlType::F32;
    std::vector<std::byte> bytes;
};
/// Encodes linear `name` of layer `layer` (weight [out x in]) for the file; empty = F32.
using GgufWeightEncoder = std::function<GgufEncodedWeight(int layer, std::string_view name, const RowMatrix& w)>;

struct GgufWriteOptions {
    std::string name = "llama";  ///< general.name
    /// general.file_type (llama_ftype: 0 all F32, 1 mostly F16, 2 mostly Q4_0, 3 mostly Q4_1,
    /// 7 mostly Q8_0, 38 mostly MXFP4); informational for llama.cpp.
    std::uint32_t file_type = 0;
    GgufWeightEncoder encode;  ///< how the seven linears of every layer are stored (empty: F32)
};

/// The key/value pairs of the GGUF file of a model with config `c` (see the file comment):
/// general.*, llama.* and, when tok is given, tokenizer.ggml.*.
inline io::GgufMetadata gguf_metadata(const Config& c, const Llama2cTokenizer* tok, const GgufWriteOptions& options) {
    auto u32 = [](int v) { return io::GgufValue(static_cast<std::uint32_t>(v)); };
    io::GgufMetadata kv;
    kv.emplace_back("general.architecture", io::GgufValue("llama"));
    kv.emplace_back("general.name", io::GgufValue(options.name));
    kv.emplace_back("general.file_type", io::GgufValue(options.file_type));
    kv.emplace_back("llama.context_length", u32(c.seq_len));
    kv.emplace_back("llama.embedding_length", u32(c.dim));
    kv.emplace_back("llama.block_count", u32(c.n_layers));
    kv.emplace_back("llama.feed_forward_length", u32(c.hidden_dim));
    kv.emplace_back("llama.attention.head_count", u32(c.n_heads));
    kv.emplace_back("llama.attention.head_count_kv", u32(c.n_kv_heads));
    kv.emplace_back("llama.rope.dimension_count", u32(c.head_size()));
    kv.emplace_back("llama.attention.layer_norm_rms_epsilon", io::GgufValue(1e-5f));
    kv.emplace_back("llama.rope.freq_base", io::GgufValue(10000.0f));
    kv.emplace_back("llama.vocab_size", u32(c.vocab_size));
    if (tok) {
        const GgufVocabulary vocab = gguf_vocabulary(*tok);
        kv.emplace_back("tokenizer.ggml.model", io::GgufValue("llama"));
        kv.emplace_back("tokenizer.ggml.tokens", io::GgufValue(vocab.tokens));
        kv.emplace_back("tokenizer.ggml.scores", io::GgufValue(vocab.scores));
        kv.emplace_back("tokenizer.ggml.token_type", io::GgufValue(vocab.types));
        kv.emplace_back("tokenizer.ggml.bos_token_id", u32(Tokenizer::kBos));
        kv.emplace_back("tokenizer.ggml.eos_token_id", u32(Tokenizer::kEos));
        kv.emplace_back("tokenizer.ggml.unknown_token_id", u32(0));
        kv.emplace_back("tokenizer.ggml.add_bos_token", io::GgufValue(true));
        kv.emplace_back("tokenizer.ggml.add_eos_token", io::GgufValue(false));
    }
    return kv;
}

/// Writes `m` and `tok` as a GGUF v3 file at `path` (all or nothing). The embedding, the norms
/// and a separate classifier are F32; the linears F32 or what options.encode returns. Throws
/// std::invalid_argument for a model whose shapes disagree with its config or a tokenizer of
/// another vocabulary size, ptq::file_error for I/O errors.
/// With tok == nullptr the file has no tokenizer.* keys (a model without a vocabulary: llama.cpp
/// cannot run it, ptq can with a tokenizer given separately).
inline void save_gguf(const Model& m, const Llama2cTokenizer* tok, const std::filesystem::path& path,
                      const GgufWriteOptions& options = {}) {
    const Config& c = m.config;
    (void)checkpoint_float_count(c, path);  // validates the config
    detail::require_no_online_transform(m, "save_gguf");
    if (tok && tok->vocab_size() != c.vocab_size)
        throw std::invalid_argument("ptq::llama::save_gguf: tokenizer has " + std::to_string(tok->vocab_size()) +
                                    " tokens, the model's vocabulary " + std::to_string(c.vocab_size));
    if (m.layers.size() != static_cast<std::size_t>(c.n_layers))
        throw std::invalid_argument("ptq::llama::save_gguf: layers.size() != n_layers");
    const io::GgufMetadata kv = gguf_metadata(c, tok, options);

    std::vector<io::GgufTensorData> tensors;
    std::vector<std::vector<std::byte>> owned;  // encoded linears (kept alive until written)
    owned.reserve(m.layers.size() * 7);
    auto check = [&](Eigen::Index rows, Eigen::Index cols, Eigen::Index want_rows, Eigen::Index want_cols,
                     const std::string& what) {
        if (rows != want_rows || cols != want_cols)
            throw std::invalid_argument("ptq::llama::save_gguf: " + what + " is " + std::to_string(rows) + " x " +
                                        std::to_string(cols) + ", expected " + std::to_string(want_rows) + " x " +
                                        std::to_string(want_cols));
    };
    auto add_matrix = [&](std::string name, const RowMatrix& w, Eigen::Index rows, Eigen::Index cols) {
        check(w.rows(), w.cols(), rows, cols, name);
        tensors.push_back({std::move(name),
                           io::GgmlType::F32,
                           {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)},
                           detail::float_bytes(w.data(), w.size())});
    };
    auto add_vector = [&](std::string name, const Vector& v, Eigen::Index n) {
        check(v.size(), 1, n, 1, name);
        tensors.push_back(
            {std::move(name), io::GgmlType::F32, {static_cast<std::uint64_t>(n)}, detail::float_bytes(v.data(), n)});
    };
    const Eigen::Index dim = c.dim, vocab_n = c.vocab_size;
    add_matrix("token_embd.weight", m.token_embedding, vocab_n, dim);
    add_vector("output_norm.weight", m.rms_final, dim);
    if (!c.shared_classifier) add_matrix("output.weight", m.classifier, vocab_n, dim);
    for (int l = 0; l < c.n_layers; ++l) {
        const Layer& L = m.layers[static_cast<std::size_t>(l)];
        const std::string blk = "blk." + std::to_string(l) + ".";
        add_vector(blk + "attn_norm.weight", L.rms_att, dim);
        add_vector(blk + "ffn_norm.weight", L.rms_ffn, dim);
        for (std::string_view name : kLinearNames) {
            const RowMatrix& w = L.linear(name);
            const std::string tname = gguf_linear_name(l, name);
            const auto [rows, cols] = linear_shape(c, name);
            if (!options.encode) {
                add_matrix(tname, w, rows, cols);
                continue;
            }
            check(w.rows(), w.cols(), rows, cols, tname);
            GgufEncodedWeight e = options.encode(l, name, w);
            owned.push_back(std::move(e.bytes));
            tensors.push_back(
                {tname, e.type, {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)}, owned.back()});
        }
    }
    io::write_gguf(path, kv, tensors);  // checks each tensor's byte count against its type
}

inline void save_gguf(const Model& m, const Llama2cTokenizer& tok, const std::filesystem::path& path,
                      const GgufWriteOptions& options = {}) {
    save_gguf(m, &tok, path, options);
}

/// A model read from a file together with its tokenizer.
struct LoadedModel {
    Model model;
    Llama2cTokenizer tokenizer;
};

namespace detail {

struct GgufReader {
    const io::GgufFile& f;

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw ptq::file_error(f.filename(), field, what);
    }
    const io::GgufValue& need(std::string_view key) const {
        const io::GgufValue* v = f.find(key);
        if (v == nullptr) fail("key '" + std::string(key) + "'", "missing");
        return *v;
    }
    /// An integer key (any GGUF integer type) in [lo, hi].
    std::int64_t integer(std::string_view key, std::int64_t lo, std::int64_t hi) const {
        const io::GgufValue& v = need(key);
        std::int64_t x = 0;
        bool ok = !v.is_array();
        if (ok) {
            std::visit(
                [&](const auto& a) {
                    using T = std::decay_t<decltype(a)>;
                    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
                        if constexpr (std::is_unsigned_v<T>) {
                            if (a > static_cast<std::uint64_t>(hi)) ok = false;
                            else x = static_cast<std::int64_t>(a);
                        } else {
                            x = static_cast<std::int64_t>(a);
                        }
                    } else {
                        ok = false;
                    }
                },
                v.storage());
        }
        if (!ok || x < lo || x > hi)
            fail("key '" + std::string(key) + "'",
                 "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], found " +
                     (ok ? std::to_string(x) : "a value of type " + std::string(io::gguf_value_type_name(v.type()))));
        return x;
    }
    double real(std::string_view key) const {
        const io::GgufValue& v = need(key);
        if (const float* p = v.get_if<float>()) return *p;
        if (const double* p = v.get_if<double>()) return *p;
        fail("key '" + std::string(key) + "'",
             "expected f32, found " + std::string(io::gguf_value_type_name(v.type())));
    }
    template <class T>
    const T& typed(std::string_view key, const char* type_name) const {
        const io::GgufValue& v = need(key);
        if (const T* p = v.get_if<T>()) return *p;
        fail("key '" + std::string(key) + "'",
             std::string("expected ") + type_name + ", found " + std::string(io::gguf_value_type_name(v.type())) +
                 (v.is_array() ? " of " + std::string(io::gguf_value_type_name(v.element_type())) : ""));
    }
};

}  // namespace detail

namespace detail {
/// The float values of tensor `t` of the mapped file `f` (ggml's formulas: io::ggml_dequantize,
/// a [ne1 x ne0] row-major matrix), whose pages are then released (release_mapped_pages).
inline RowMatrix gguf_float_matrix(const io::GgufFile& f, const io::GgufTensorView& t) {
    RowMatrix w;
    try {
        w = io::ggml_dequantize(t.type, t.ne, t.data, std::string(t.name));
    } catch (const ptq::invalid_argument& e) {
        throw ptq::file_error(f.filename(), "tensor '" + std::string(t.name) + "'", e.what());
    }
    release_mapped_pages(t.data);
    return w;
}
}  // namespace detail

/// Reads a GGUF file written by save_gguf (or any GGUF of the same model family, e.g. from
/// llama.cpp's converters). Tensors may be F32, F16, BF16, Q8_0, Q4_0, Q4_1 or MXFP4, decoded
/// with ggml's own formulas (io/ggml_dequantize.hpp). Throws ptq::file_error naming the file and
/// the key or tensor on any mismatch. With `lazy`, the linears are checked (present, shape,
/// type) but not read: the returned model's linears are empty and *lazy reads (dequantizes) one
/// layer's on demand (it keeps the file mapped).
inline LoadedModel load_gguf(const std::filesystem::path& path, LayerLoader* lazy = nullptr) {
    const auto fp = std::make_shared<const io::GgufFile>(path);
    const io::GgufFile& f = *fp;
    const detail::GgufReader r{f};
    const std::string& arch = r.typed<std::string>("general.architecture", "a string");
    if (arch != "llama") r.fail("key 'general.architecture'", "unsupported architecture '" + arch + "' (only 'llama')");

    LoadedModel out;
    Model& m = out.model;
    Config& c = m.config;
    constexpr std::int64_t kMax = 1 << 20;
    c.dim = static_cast<int>(r.integer("llama.embedding_length", 1, kMax));
    c.hidden_dim = static_cast<int>(r.integer("llama.feed_forward_length", 1, kMax));
    c.n_layers = static_cast<int>(r.integer("llama.block_count", 1, 4096));
    c.n_heads = static_cast<int>(r.integer("llama.attention.head_count", 1, kMax));
    c.n_kv_heads = f.find("llama.attention.head_count_kv")
                       ? static_cast<int>(r.integer("llama.attention.head_count_kv", 1, kMax))
                       : c.n_heads;
    c.seq_len = static_cast<int>(r.integer("llama.context_length", 1, kMax));
    // Hyper-parameters the forward pass hard-codes: refuse files that need others.
    if (f.find("llama.rope.dimension_count") && c.n_heads > 0 && c.dim % c.n_heads == 0 &&
        r.integer("llama.rope.dimension_count", 1, kMax) != c.dim / c.n_heads)
        r.fail("key 'llama.rope.dimension_count'", "partial rotary embeddings are not supported (must be head size " +
                                                       std::to_string(c.dim / c.n_heads) + ")");
    if (const double eps = r.real("llama.attention.layer_norm_rms_epsilon"); std::abs(eps - 1e-5) > 1e-9)
        r.fail("key 'llama.attention.layer_norm_rms_epsilon'",
               "is " + std::to_string(eps) + "; the harness implements 1e-5");
    if (f.find("llama.rope.freq_base"))
        if (const double base = r.real("llama.rope.freq_base"); base != 10000.0)
            r.fail("key 'llama.rope.freq_base'", "is " + std::to_string(base) + "; the harness implements 10000");
    for (std::string_view k : {"llama.rope.scaling.type", "llama.rope.scale_linear", "llama.rope.scaling.factor"})
        if (f.find(k)) r.fail("key '" + std::string(k) + "'", "RoPE scaling is not supported");

    // Vocabulary.
    const std::string& tmodel = r.typed<std::string>("tokenizer.ggml.model", "a string");
    if (tmodel != "llama")
        r.fail("key 'tokenizer.ggml.model'",
               "tokenizer '" + tmodel + "' is not supported (only 'llama', SentencePiece)");
    const auto& tokens = r.typed<std::vector<std::string>>("tokenizer.ggml.tokens", "an array of strings");
    const auto& scores = r.typed<std::vector<float>>("tokenizer.ggml.scores", "an array of f32");
    const auto& types = r.typed<std::vector<std::int32_t>>("tokenizer.ggml.token_type", "an array of i32");
    if (scores.size() != tokens.size() || types.size() != tokens.size())
        r.fail("key 'tokenizer.ggml.scores'", std::to_string(tokens.size()) + " tokens, " +
                                                  std::to_string(scores.size()) + " scores and " +
                                                  std::to_string(types.size()) + " token types");
    if (tokens.size() < Llama2cTokenizer::kByteTokenOffset + 256 || tokens.size() > static_cast<std::size_t>(kMax))
        r.fail("key 'tokenizer.ggml.tokens'",
               std::to_string(tokens.size()) + " tokens; the byte fallback needs at least 259");
    c.vocab_size = static_cast<int>(tokens.size());
    if (f.find("llama.vocab_size") && r.integer("llama.vocab_size", 1, kMax) != c.vocab_size)
        r.fail("key 'llama.vocab_size'", "disagrees with the " + std::to_string(c.vocab_size) + " tokens");
    if (f.find("tokenizer.ggml.bos_token_id") && r.integer("tokenizer.ggml.bos_token_id", 0, kMax) != Tokenizer::kBos)
        r.fail("key 'tokenizer.ggml.bos_token_id'", "must be 1 (the harness's BOS id)");
    if (f.find("tokenizer.ggml.eos_token_id") && r.integer("tokenizer.ggml.eos_token_id", 0, kMax) != Tokenizer::kEos)
        r.fail("key 'tokenizer.ggml.eos_token_id'", "must be 2 (the harness's EOS id)");
    std::vector<std::string> pieces;
    pieces.reserve(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        pieces.push_back(detail::unescape_whitespace(tokens[i]));
        if (i >= static_cast<std::size_t>(Llama2cTokenizer::kByteTokenOffset) &&
            i < static_cast<std::size_t>(Llama2cTokenizer::kByteTokenOffset) + 256) {
            unsigned byte = 0;
            if (!detail::is_byte_piece(pieces.back(), byte) || byte != i - Llama2cTokenizer::kByteTokenOffset)
                r.fail("key 'tokenizer.ggml.tokens'",
                       "token " + std::to_string(i) + " is '" + tokens[i] +
                           "'; the harness's byte fallback needs the byte token of byte " +
                           std::to_string(i - Llama2cTokenizer::kByteTokenOffset) + " (\"<0xHH>\") at 3 + byte");
        }
    }
    out.tokenizer = Llama2cTokenizer::from_pieces(std::move(pieces), scores);

    // Tensors: every one the model needs, nothing else.
    (void)checkpoint_float_count(c, path);  // the same structural checks as a llama2.c header
    std::set<std::string, std::less<>> used;
    auto check = [&](const std::string& name, Eigen::Index rows, Eigen::Index cols, bool matrix) -> io::GgufTensorView {
        const io::GgufTensorInfo* info = f.header().find_tensor(name);
        if (info == nullptr) r.fail("tensor '" + name + "'", "missing");
        used.insert(name);
        const std::vector<std::uint64_t> want =
            matrix ? std::vector<std::uint64_t>{static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)}
                   : std::vector<std::uint64_t>{static_cast<std::uint64_t>(rows)};
        if (info->ne != want) {
            auto show = [](const std::vector<std::uint64_t>& ne) {
                std::string s = "[";
                for (std::size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
                return s + "]";
            };
            r.fail("tensor '" + name + "'", "ne is " + show(info->ne) + ", expected " + show(want));
        }
        const io::GgufTensorView t = f.tensor(*info);
        if (!io::ggml_dequantize_supported(t.type))
            r.fail("tensor '" + name + "'", "ggml type " + std::string(io::ggml_type_name(t.type)) +
                                                " is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, MXFP4)");
        return t;
    };
    auto fetch = [&](const std::string& name, Eigen::Index rows, Eigen::Index cols, bool matrix) -> RowMatrix {
        RowMatrix w = detail::gguf_float_matrix(f, check(name, rows, cols, matrix));
        if (!matrix) return Eigen::Map<const RowMatrix>(w.data(), rows, cols);  // [1 x n] -> [n x 1]
        return w;
    };
    auto fetch_vector = [&](const std::string& name, Eigen::Index n) -> Vector {
        const RowMatrix w = fetch(name, n, 1, false);
        return Eigen::Map<const Vector>(w.data(), n);
    };
    const Eigen::Index dim = c.dim, vocab_n = c.vocab_size;
    m.token_embedding = fetch("token_embd.weight", vocab_n, dim, true);
    m.rms_final = fetch_vector("output_norm.weight", dim);
    c.shared_classifier = !f.header().find_tensor("output.weight");
    if (!c.shared_classifier) m.classifier = fetch("output.weight", vocab_n, dim, true);
    m.layers.resize(static_cast<std::size_t>(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l) {
        Layer& L = m.layers[static_cast<std::size_t>(l)];
        const std::string blk = "blk." + std::to_string(l) + ".";
        L.rms_att = fetch_vector(blk + "attn_norm.weight", dim);
        L.rms_ffn = fetch_vector(blk + "ffn_norm.weight", dim);
        for (std::string_view name : kLinearNames) {
            const auto [rows, cols] = linear_shape(c, name);
            if (lazy) (void)check(gguf_linear_name(l, name), rows, cols, true);  // read by *lazy
            else L.linear(name) = fetch(gguf_linear_name(l, name), rows, cols, true);
        }
    }
    for (const auto& t : f.tensors())
        if (!used.count(t.name)) r.fail("tensor '" + t.name + "'", "not part of the llama model (unexpected tensor)");
    if (lazy)
        *lazy = [fp](int l, Layer& L) {
            for (std::string_view name : kLinearNames)
                L.linear(name) =
                    detail::gguf_float_matrix(*fp, fp->tensor(*fp->header().find_tensor(gguf_linear_name(l, name))));
        };
    compute_rope_tables(m);
    return out;
}

}  // namespace ptq::llama
