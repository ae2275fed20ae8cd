// Writes the seed corpora of the fuzz targets with ptq's own writers (so the fuzzers start
// from valid files and mutate their every field): ptq_fuzz_seeds <dir> creates
// <dir>/{safetensors,gguf,llama_checkpoint,llama_tokenizer}/.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ptq/io/gguf.hpp>
#include <ptq/io/safetensors.hpp>

#include "llama2c_checkpoint.hpp"
#include "llama2c_tokenizer.hpp"
#include "forward.hpp"
#include "evaluation.hpp"
#include "calibration_text.hpp"

namespace fs = std::filesystem;
using namespace ptq::io;

namespace {

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    std::uint32_t s = seed * 2654435761u + 1;
    for (auto& b : v) {
        s = s * 1664525u + 1013904223u;
        b = static_cast<std::byte>(s >> 24);
    }
    return v;
}

void safetensors_seeds(const fs::path& d) {
    std::vector<std::vector<std::byte>> store;
    std::vector<TensorData> all;
    unsigned seed = 1;
    for (DType t : all_dtypes) {
        store.push_back(pattern(4 * bits_per_element(t) / 8, seed++));
        all.push_back({std::string(dtype_name(t)), t, {2, 2}, store.back()});
    }
    write_safetensors(d / "every_dtype.safetensors", all, {{"source", "ptq"}});
    const auto f16 = pattern(2 * 12, 40), f32 = pattern(4 * 6, 41), bf = pattern(2 * 3, 42), s = pattern(8, 43);
    write_safetensors(d / "matrices.safetensors",
                      std::vector<TensorData>{{"model.layers.0.mlp.down_proj.weight", DType::F16, {3, 4}, f16},
                                              {"model.norm.weight", DType::F32, {6}, f32},
                                              {"b", DType::BF16, {1, 3}, bf},
                                              {"scalar", DType::I64, {}, s},
                                              {"empty", DType::F32, {0, 3}, {}}});
    write_safetensors(d / "empty.safetensors", std::vector<TensorData>{});
}

void gguf_seeds(const fs::path& d) {
    const GgufMetadata kv = {
        {"general.architecture", GgufValue("llama")},
        {"llama.block_count", GgufValue(std::uint32_t{1})},
        {"llama.attention.layer_norm_rms_epsilon", GgufValue(1e-5f)},
        {"u8", GgufValue(std::uint8_t{1})},
        {"i8", GgufValue(std::int8_t{-1})},
        {"u16", GgufValue(std::uint16_t{2})},
        {"i16", GgufValue(std::int16_t{-2})},
        {"i32", GgufValue(std::int32_t{-3})},
        {"b", GgufValue(true)},
        {"u64", GgufValue(std::uint64_t{5})},
        {"i64", GgufValue(std::int64_t{-5})},
        {"f64", GgufValue(0.5)},
        {"tokenizer.ggml.tokens", GgufValue(std::vector<std::string>{"<unk>", "<s>", "a"})},
        {"tokenizer.ggml.scores", GgufValue(std::vector<float>{0, 0, -1})},
        {"tokenizer.ggml.token_type", GgufValue(std::vector<std::int32_t>{2, 3, 1})},
        {"a.bool", GgufValue(std::vector<bool>{true, false})},
        {"a.u64", GgufValue(std::vector<std::uint64_t>{1, 2})},
        {"a.f64", GgufValue(std::vector<double>{1.0})},
        {"a.u8", GgufValue(std::vector<std::uint8_t>{1})},
    };
    const auto f32 = pattern(4 * 8, 1), f16 = pattern(2 * 8, 2), bf = pattern(2 * 4, 3), q40 = pattern(18 * 2, 4),
               q80 = pattern(34, 5), mx = pattern(17, 6);
    const std::vector<GgufTensorData> ts = {
        {"token_embd.weight", GgmlType::F32, {4, 2}, f32},    {"blk.0.attn_q.weight", GgmlType::F16, {4, 2}, f16},
        {"output_norm.weight", GgmlType::BF16, {4}, bf},      {"blk.0.ffn_up.weight", GgmlType::Q4_0, {32, 2}, q40},
        {"blk.0.ffn_down.weight", GgmlType::Q8_0, {32}, q80}, {"blk.0.ffn_gate.weight", GgmlType::MXFP4, {32, 1}, mx}};
    write_gguf(d / "model.gguf", kv, ts);
    write_gguf(d / "align8.gguf", GgufMetadata{{"general.alignment", GgufValue(std::uint32_t{8})}},
               std::span(ts).first(3));
    write_gguf(d / "kv_only.gguf", kv, {});
}

void checkpoint_seeds(const fs::path& d) {
    auto make = [](int dim, int hidden, int layers, int heads, int kv_heads, int vocab, int seq, bool shared) {
        ptq::llama::Model m;
        auto& c = m.config;
        c = {dim, hidden, layers, heads, kv_heads, vocab, seq, shared};
        auto fill = [k = 0.0f](auto& x, Eigen::Index r, Eigen::Index cc) mutable {
            x.resize(r, cc);
            for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = (k += 0.01f);
        };
        fill(m.token_embedding, vocab, dim);
        m.layers.resize(static_cast<std::size_t>(layers));
        for (auto& l : m.layers) {
            l.rms_att = Eigen::VectorXf::Ones(dim);
            l.rms_ffn = Eigen::VectorXf::Ones(dim);
            fill(l.wq, dim, dim);
            fill(l.wk, c.kv_dim(), dim);
            fill(l.wv, c.kv_dim(), dim);
            fill(l.wo, dim, dim);
            fill(l.w1, hidden, dim);
            fill(l.w2, dim, hidden);
            fill(l.w3, hidden, dim);
        }
        m.rms_final = Eigen::VectorXf::Ones(dim);
        fill(m.legacy_rope_cos, seq, c.head_size() / 2);
        fill(m.legacy_rope_sin, seq, c.head_size() / 2);
        if (!shared) fill(m.classifier, vocab, dim);
        return m;
    };
    ptq::llama::save_checkpoint(make(8, 12, 1, 2, 1, 5, 3, true), d / "tiny_gqa.bin");
    ptq::llama::save_checkpoint(make(4, 4, 2, 1, 1, 3, 2, false), d / "tiny_classifier.bin");
}

void tokenizer_seeds(const fs::path& d) {
    auto write = [](const fs::path& p, const std::vector<std::string>& pieces) {
        std::ofstream out(p, std::ios::binary);
        const std::int32_t mtl = 8;
        out.write(reinterpret_cast<const char*>(&mtl), 4);
        float score = 0;
        for (const auto& s : pieces) {
            score -= 0.5f;
            const auto len = static_cast<std::int32_t>(s.size());
            out.write(reinterpret_cast<const char*>(&score), 4);
            out.write(reinterpret_cast<const char*>(&len), 4);
            out.write(s.data(), len);
        }
    };
    std::vector<std::string> p = {"<unk>", "\n<s>\n", "\n</s>\n"};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        p.emplace_back(buf);
    }
    for (const char* s : {" ", "e", "t", "a", "o", "n", " t", "he", " the", "On", "ce", "Once", " a", " u", "up", "on"})
        p.emplace_back(s);
    write(d / "bytes_and_merges.bin", p);  // 275 tokens: read to the end
    while (p.size() < 300) p.push_back("x" + std::to_string(p.size()));
    write(d / "vocab300.bin", p);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    const fs::path out = argv[1];
    for (const char* t : {"safetensors", "gguf", "llama_checkpoint", "llama_tokenizer"})
        fs::create_directories(out / t);
    safetensors_seeds(out / "safetensors");
    gguf_seeds(out / "gguf");
    checkpoint_seeds(out / "llama_checkpoint");
    tokenizer_seeds(out / "llama_tokenizer");
    // Each seed must load (a seed the loader rejects would not exercise the valid paths).
    for (const auto& e : fs::directory_iterator(out / "safetensors")) SafetensorsFile f(e.path());
    for (const auto& e : fs::directory_iterator(out / "gguf")) GgufFile f(e.path());
    for (const auto& e : fs::directory_iterator(out / "llama_checkpoint")) (void)ptq::llama::load_checkpoint(e.path());
    (void)ptq::llama::Llama2cTokenizer::load(out / "llama_tokenizer" / "bytes_and_merges.bin");
    (void)ptq::llama::Llama2cTokenizer::load(out / "llama_tokenizer" / "vocab300.bin", 300);
    std::printf("ptq_fuzz_seeds: seeds written to %s\n", out.c_str());
    return 0;
}
