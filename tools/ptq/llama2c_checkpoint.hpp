// llama2.c "legacy" checkpoints (version 0: a 7 x int32 header followed by raw fp32 tensors,
// every matrix [out x in] row-major): load_checkpoint / save_checkpoint. Hostile or truncated
// files raise FormatError naming the file and the problem; sizes are validated against the file
// length before anything proportional to the header's claims is allocated.
#pragma once

#include "model.hpp"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>

namespace ptq::llama {

namespace detail {

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
    detail::require_no_online_transform(m, "save_checkpoint");
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

}  // namespace ptq::llama
