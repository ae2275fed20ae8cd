// Shared helpers of the real-model tests (tests/model): where the data is and whether it is
// there, the real model / tokenizer / evaluation set loaded once, temporary directories, raw
// file bytes, and a tiny random model.
#pragma once

#include <doctest/doctest.h>

#include "llama2c_checkpoint.hpp"
#include "llama2c_tokenizer.hpp"
#include "forward.hpp"
#include "evaluation.hpp"
#include "calibration_text.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace ptq_model_test {

namespace fs = std::filesystem;
using namespace ptq::llama;

// ---------------------------------------------------------------------------------------------
// Data location and skipping
// ---------------------------------------------------------------------------------------------

inline fs::path data_dir() {
    if (const char* env = std::getenv("PTQ_DATA_DIR"); env && *env) return env;
    return PTQ_DATA_DIR;
}
inline fs::path model_path() { return data_dir() / "stories260K" / "stories260K.bin"; }
inline fs::path tokenizer_path() { return data_dir() / "stories260K" / "tok512.bin"; }
inline fs::path valid_path() { return data_dir() / "tinystories" / "valid.txt"; }
inline fs::path calib_path() { return data_dir() / "tinystories" / "train_calib.txt"; }
inline fs::path wikitext_path() { return data_dir() / "wikitext2" / "test.txt"; }

// Evaluated once, while the test cases are registered (doctest::skip takes a value).
inline bool have_data() {
    static const bool ok = [] {
        std::error_code ec;
        const bool found = fs::is_regular_file(model_path(), ec) && fs::is_regular_file(tokenizer_path(), ec) &&
                           fs::is_regular_file(valid_path(), ec);
        if (!found)
            std::cerr << "SKIPPED: shared data not found at '" << data_dir().string()
                      << "' (set PTQ_DATA_DIR to the folder holding stories260K/ and tinystories/); "
                         "the real-model tests are reported as skipped.\n";
        return found;
    }();
    return ok;
}

// The real model, tokenizer and encoded evaluation set, loaded once.
struct RealData {
    Model model;
    Llama2cTokenizer tok;
    std::vector<std::vector<int>> docs;
};
inline const RealData& real() {
    static const RealData d = [] {
        RealData r;
        r.model = load_checkpoint(model_path());
        r.tok = Llama2cTokenizer::load(tokenizer_path(), r.model.config.vocab_size);
        r.docs = encode_stories(r.tok, split_stories(read_text_file(valid_path())), r.model.config.seq_len);
        return r;
    }();
    return d;
}

// ---------------------------------------------------------------------------------------------
// Temporary files
// ---------------------------------------------------------------------------------------------

struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("ptq_model_tests_" + std::to_string(rd()) + "_" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

inline void write_bytes(const fs::path& p, const std::vector<char>& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}
inline std::vector<char> read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
template <class T>
inline void append(std::vector<char>& b, T v) {
    const char* p = reinterpret_cast<const char*>(&v);
    b.insert(b.end(), p, p + sizeof v);
}
inline std::vector<char> header_bytes(std::int32_t dim, std::int32_t hidden, std::int32_t layers, std::int32_t heads,
                                      std::int32_t kv_heads, std::int32_t vocab, std::int32_t seq) {
    std::vector<char> b;
    for (std::int32_t v : {dim, hidden, layers, heads, kv_heads, vocab, seq}) append(b, v);
    return b;
}

// ---------------------------------------------------------------------------------------------
// A tiny random model
// ---------------------------------------------------------------------------------------------

inline Model random_model(bool shared, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto randm = [&](Eigen::Index r, Eigen::Index c, float s) {
        RowMatrix m(r, c);
        for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = s * nd(rng);
        return m;
    };
    auto randnorm = [&](Eigen::Index n) {
        Vector v(n);
        for (Eigen::Index i = 0; i < n; ++i) v(i) = 1.0f + 0.2f * nd(rng);
        return v;
    };
    Model m;
    m.config = Config{16, 24, 2, 2, 1, 32, 16, shared};
    const Config& c = m.config;
    m.token_embedding = randm(c.vocab_size, c.dim, 1.0f);
    for (int l = 0; l < c.n_layers; ++l) {
        Layer L;
        L.rms_att = randnorm(c.dim);
        L.rms_ffn = randnorm(c.dim);
        L.wq = randm(c.dim, c.dim, 0.3f);
        L.wk = randm(c.kv_dim(), c.dim, 0.3f);
        L.wv = randm(c.kv_dim(), c.dim, 0.3f);
        L.wo = randm(c.dim, c.dim, 0.3f);
        L.w1 = randm(c.hidden_dim, c.dim, 0.3f);
        L.w2 = randm(c.dim, c.hidden_dim, 0.3f);
        L.w3 = randm(c.hidden_dim, c.dim, 0.3f);
        m.layers.push_back(L);
    }
    m.rms_final = randnorm(c.dim);
    if (!shared) m.classifier = randm(c.vocab_size, c.dim, 0.5f);
    compute_rope_tables(m);
    return m;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

}  // namespace ptq_model_test
