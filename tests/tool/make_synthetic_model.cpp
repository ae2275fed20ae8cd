// make_synthetic_model DIR [--dim N] [--hidden N] [--layers N] [--heads N] [--kv-heads N]
//                          [--vocab N] [--seq-len N] [--dtype f32|f16] [--seed N]
//                          [--untied] [--params N]
// Writes a Hugging Face Llama folder (config.json + model.safetensors) with random weights for
// the memory test of the ptq command: linear weights uniform in [-1/sqrt(in), 1/sqrt(in)]
// from a fixed-seed generator, RMSNorm weights 1. Defaults: dim 1024, hidden 2816, 4 layers,
// 16 heads, vocab 32000 (84 M parameters, tied embedding). --params N raises the layer count
// until the model has at least N parameters. The tensors are generated and written one at a
// time through SafetensorsStreamWriter, so the program holds one tensor at most. Prints the
// parameter count and the file size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include <ptq/format/half.hpp>
#include <ptq/io/atomic_file.hpp>
#include <ptq/io/safetensors.hpp>

#include "hf_model.hpp"

namespace {

struct Shape {
    std::uint64_t dim = 1024, hidden = 2816, layers = 4, heads = 16, kv_heads = 16, vocab = 32000, seq_len = 2048;
    bool tied = true;
    std::uint64_t kv_dim() const { return dim / heads * kv_heads; }
    std::uint64_t per_layer() const { return 2 * dim * dim + 2 * kv_dim() * dim + 3 * dim * hidden + 2 * dim; }
    std::uint64_t params() const { return vocab * dim * (tied ? 1 : 2) + dim + layers * per_layer(); }
};

/// splitmix64: a fixed, fast, platform-independent sequence.
struct Rng {
    std::uint64_t s;
    std::uint64_t next() {
        std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    /// Uniform in [-a, a): the top 24 bits scaled.
    float uniform(float a) { return (static_cast<float>(next() >> 40) / 16777216.0f * 2.0f - 1.0f) * a; }
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "make_synthetic_model: %s\nusage: make_synthetic_model DIR [--dim N] [--hidden N] "
                 "[--layers N] [--heads N] [--kv-heads N] [--vocab N] [--seq-len N] [--dtype f32|f16] "
                 "[--seed N] [--untied] [--params N]\n",
                 why.c_str());
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc < 2) usage("missing DIR");
    const std::filesystem::path dir = argv[1];
    Shape s;
    bool f16 = false;
    std::uint64_t seed = 1, min_params = 0;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--untied") {
            s.tied = false;
            continue;
        }
        if (i + 1 >= argc) usage("missing value of " + a);
        const std::string v = argv[++i];
        auto num = [&] {
            char* end = nullptr;
            const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || x == 0) usage("bad value '" + v + "' of " + a);
            return static_cast<std::uint64_t>(x);
        };
        if (a == "--dim") s.dim = num();
        else if (a == "--hidden") s.hidden = num();
        else if (a == "--layers") s.layers = num();
        else if (a == "--heads") s.heads = num();
        else if (a == "--kv-heads") s.kv_heads = num();
        else if (a == "--vocab") s.vocab = num();
        else if (a == "--seq-len") s.seq_len = num();
        else if (a == "--seed") seed = num();
        else if (a == "--params") min_params = num();
        else if (a == "--dtype" && (v == "f32" || v == "f16")) f16 = v == "f16";
        else usage("unknown option " + a + " " + v);
    }
    if (s.dim % s.heads != 0 || s.heads % s.kv_heads != 0 || (s.dim / s.heads) % 2 != 0)
        usage("dim must be heads x an even head size, heads a multiple of kv-heads");
    if (std::max({s.dim, s.hidden, s.vocab, s.seq_len}) > 1u << 30) usage("sizes must stay below 2^30");
    while (s.params() < min_params) ++s.layers;

    using ptq::io::DType;
    const DType dt = f16 ? DType::F16 : DType::F32;
    std::vector<ptq::io::SafetensorsEntry> decl;
    std::vector<std::uint64_t> fan_in;  // 0: an RMSNorm weight (all ones)
    auto add = [&](std::string name, std::vector<std::uint64_t> shape, std::uint64_t in) {
        decl.push_back({std::move(name), dt, std::move(shape)});
        fan_in.push_back(in);
    };
    add("model.embed_tokens.weight", {s.vocab, s.dim}, s.dim);
    add("model.norm.weight", {s.dim}, 0);
    if (!s.tied) add("lm_head.weight", {s.vocab, s.dim}, s.dim);
    for (std::uint64_t l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {s.dim}, 0);
        add(p + "post_attention_layernorm.weight", {s.dim}, 0);
        add(p + "self_attn.q_proj.weight", {s.dim, s.dim}, s.dim);
        add(p + "self_attn.k_proj.weight", {s.kv_dim(), s.dim}, s.dim);
        add(p + "self_attn.v_proj.weight", {s.kv_dim(), s.dim}, s.dim);
        add(p + "self_attn.o_proj.weight", {s.dim, s.dim}, s.dim);
        add(p + "mlp.gate_proj.weight", {s.hidden, s.dim}, s.dim);
        add(p + "mlp.up_proj.weight", {s.hidden, s.dim}, s.dim);
        add(p + "mlp.down_proj.weight", {s.dim, s.hidden}, s.hidden);
    }

    std::filesystem::create_directories(dir);
    ptq::io::SafetensorsStreamWriter w(dir / "model.safetensors", decl);
    Rng rng{seed};
    std::vector<std::byte> buf;
    for (std::size_t i = 0; i < decl.size(); ++i) {
        std::uint64_t n = 1;
        for (auto d : decl[i].shape) n *= d;
        buf.resize(static_cast<std::size_t>(n) * (f16 ? 2 : 4));
        const float a = fan_in[i] == 0 ? 0.0f : 1.0f / std::sqrt(static_cast<float>(fan_in[i]));
        for (std::uint64_t k = 0; k < n; ++k) {
            const float x = fan_in[i] == 0 ? 1.0f : rng.uniform(a);
            if (f16) {
                const std::uint16_t h = ptq::float_to_half_bits(x);
                std::memcpy(buf.data() + 2 * k, &h, 2);
            } else {
                std::memcpy(buf.data() + 4 * k, &x, 4);
            }
        }
        w.write(i, buf);
    }
    w.commit();

    // config.json as the harness writes it (the reader's keys), with this file's dtype.
    ptq::llama::Config c;
    c.dim = static_cast<int>(s.dim);
    c.hidden_dim = static_cast<int>(s.hidden);
    c.n_layers = static_cast<int>(s.layers);
    c.n_heads = static_cast<int>(s.heads);
    c.n_kv_heads = static_cast<int>(s.kv_heads);
    c.vocab_size = static_cast<int>(s.vocab);
    c.seq_len = static_cast<int>(s.seq_len);
    c.shared_classifier = s.tied;
    auto j = ptq::llama::hf_config_json(c);
    j["torch_dtype"] = f16 ? "float16" : "float32";
    const std::string text = j.dump(2) + "\n";
    ptq::io::AtomicFile cfg(dir / "config.json");
    cfg.write(text.data(), text.size());
    cfg.commit();
    std::printf("make_synthetic_model: %s: %llu parameters (%llu layers), model.safetensors %llu bytes\n",
                dir.string().c_str(), static_cast<unsigned long long>(s.params()),
                static_cast<unsigned long long>(s.layers), static_cast<unsigned long long>(w.file_size()));
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "make_synthetic_model: %s\n", e.what());
    return 1;
}
