// The Llama model through model files (tools/ptq/gguf_model.hpp, hf_model.hpp) and the
// chunked perplexity protocol of llama.cpp (chunked_evaluation.hpp).
//
// Oracles: the llama2.c checkpoint itself (weights must come back bit for bit, and the NLL of
// docs/DESIGN.md §16, 1.2662, measured by an independent fp64 implementation); transformers'
// rotate-half RoPE written here from its formula (q * cos + rotate_half(q) * sin) for the q/k
// row permutation; llama.cpp's converter conventions (token types, U32 keys, ne order) checked
// on the bytes through the generic GGUF / safetensors readers, not through the model loaders.
#include <doctest/doctest.h>

#include "chunked_evaluation.hpp"
#include "gguf_model.hpp"
#include "gguf_quantize.hpp"
#include "hf_model.hpp"
#include "llama2c_checkpoint.hpp"
#include "llama2c_tokenizer.hpp"
#include "forward.hpp"
#include "evaluation.hpp"
#include "calibration_text.hpp"
#include "support.hpp"

#include <ptq/io/gguf.hpp>
#include <ptq/io/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace ptq::llama;
using namespace ptq_model_test;

namespace {

// Runs f, which must throw ptq::file_error; returns the message.
template <class F>
std::string file_error_message(F&& f) {
    try {
        f();
    } catch (const ptq::file_error& e) {
        return e.what();
    } catch (const std::exception& e) {
        FAIL("expected ptq::file_error, got another exception: " << e.what());
        return {};
    }
    FAIL("expected ptq::file_error, nothing was thrown");
    return {};
}

// A llama2.c-style vocabulary of 3 specials + 256 byte tokens + `extra`.
Llama2cTokenizer byte_vocab_tokenizer(const std::vector<std::string>& extra) {
    std::vector<std::string> pieces{"<unk>", "\n<s>\n", "\n</s>\n"};
    std::vector<float> scores(3, 0.0f);
    char buf[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        pieces.emplace_back(buf);
        scores.push_back(0.0f);
    }
    for (std::size_t i = 0; i < extra.size(); ++i) {
        pieces.push_back(extra[i]);
        scores.push_back(-static_cast<float>(i));
    }
    return Llama2cTokenizer::from_pieces(pieces, scores);
}

// The tiny random model of support.hpp with a vocabulary large enough for the byte fallback.
Model random_model_vocab(bool shared, unsigned seed, int vocab) {
    Model m = random_model(shared, seed);
    std::mt19937 rng(seed + 1000);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    m.config.vocab_size = vocab;
    m.token_embedding.resize(vocab, m.config.dim);
    for (Eigen::Index i = 0; i < m.token_embedding.size(); ++i) m.token_embedding.data()[i] = nd(rng);
    if (!shared) {
        m.classifier.resize(vocab, m.config.dim);
        for (Eigen::Index i = 0; i < m.classifier.size(); ++i) m.classifier.data()[i] = 0.5f * nd(rng);
    }
    return m;
}

void check_same_weights(const Model& a, const Model& b) {
    const Config &x = a.config, &y = b.config;
    CHECK(x.dim == y.dim);
    CHECK(x.hidden_dim == y.hidden_dim);
    CHECK(x.n_layers == y.n_layers);
    CHECK(x.n_heads == y.n_heads);
    CHECK(x.n_kv_heads == y.n_kv_heads);
    CHECK(x.vocab_size == y.vocab_size);
    CHECK(x.seq_len == y.seq_len);
    CHECK(x.shared_classifier == y.shared_classifier);
    REQUIRE(a.layers.size() == b.layers.size());
    CHECK(a.token_embedding == b.token_embedding);
    CHECK(a.rms_final == b.rms_final);
    CHECK(a.classifier == b.classifier);
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        CHECK(a.layers[l].rms_att == b.layers[l].rms_att);
        CHECK(a.layers[l].rms_ffn == b.layers[l].rms_ffn);
        for (std::string_view n : kLinearNames) {
            INFO("layer " << l << " " << n);
            CHECK(a.layers[l].linear(n) == b.layers[l].linear(n));  // bit for bit
        }
    }
}

// Rebuilds a GGUF file with its key/values and tensors edited by `edit` (names, shapes, types
// and bytes of the original), written with the generic writer.
template <class Edit>
void rewrite_gguf(const fs::path& in, const fs::path& out, Edit edit) {
    const ptq::io::GgufFile f(in);
    ptq::io::GgufMetadata kv = f.kv();
    std::vector<ptq::io::GgufTensorData> tensors;
    for (const auto& t : f.tensors()) tensors.push_back({t.name, t.type, t.ne, f.tensor(t).data});
    edit(kv, tensors);
    ptq::io::write_gguf(out, kv, tensors);
}

void set_kv(ptq::io::GgufMetadata& kv, const std::string& key, ptq::io::GgufValue v) {
    for (auto& [k, x] : kv)
        if (k == key) {
            x = std::move(v);
            return;
        }
    kv.emplace_back(key, std::move(v));
}

}  // namespace

// =============================================================================================
// Hugging Face RoPE row order
// =============================================================================================

TEST_CASE("HF q/k permutation: rotate-half RoPE on permuted rows == adjacent-pair RoPE, permuted") {
    // Head size 4: llama2.c rows (r0, r1 | r2, r3) pair (0,1) and (2,3); HF pairs (0,2), (1,3).
    RowMatrix w(8, 3);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(i);
    const RowMatrix hf = rope_rows_to_rotate_half(w, 2);
    const int expect[8] = {0, 2, 1, 3, 4, 6, 5, 7};  // HF row k is llama2.c row expect[k]
    for (int k = 0; k < 8; ++k) CHECK(hf.row(k) == w.row(expect[k]));
    CHECK(rope_rows_to_adjacent_pairs(hf, 2) == w);
    CHECK_THROWS_AS(rope_rows_to_rotate_half(w, 3), std::invalid_argument);
    CHECK_THROWS_AS(rope_rows_to_adjacent_pairs(RowMatrix(6, 2), 2), std::invalid_argument);  // odd head size

    // Property on a real-sized head layout: for x and position p, transformers' rotate-half RoPE
    // of (W_hf x) equals the row permutation of llama2.c's adjacent-pair RoPE of (W x).
    Model m = random_model(true, 7);
    m.config.seq_len = 64;
    const int heads = 4, hs = 8, half = hs / 2, in = 16;
    m.config.dim = heads * hs;
    m.config.n_heads = heads;
    compute_rope_tables(m);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    RowMatrix W(heads * hs, in), X(m.config.seq_len, in);
    for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = nd(rng);
    for (Eigen::Index i = 0; i < X.size(); ++i) X.data()[i] = nd(rng);
    RowMatrix q = X * W.transpose();  // [T x heads*hs], row t = position t
    ptq::llama::detail::apply_rope(q, m);
    const RowMatrix q_hf = X * rope_rows_to_rotate_half(W, heads).transpose();
    for (Eigen::Index t = 0; t < X.rows(); ++t)
        for (int h = 0; h < heads; ++h)
            for (int i = 0; i < half; ++i) {
                // transformers: inv_freq_i = theta^(-2i/hs), cos/sin = cat(freqs, freqs),
                // out = q * cos + rotate_half(q) * sin, rotate_half(q) = cat(-q[half:], q[:half]).
                const double a = static_cast<double>(t) * std::pow(10000.0, -2.0 * i / hs);
                const double x1 = q_hf(t, h * hs + i), x2 = q_hf(t, h * hs + half + i);
                const double o1 = x1 * std::cos(a) - x2 * std::sin(a), o2 = x2 * std::cos(a) + x1 * std::sin(a);
                CHECK(o1 == doctest::Approx(q(t, h * hs + 2 * i)).epsilon(1e-4).scale(1.0));
                CHECK(o2 == doctest::Approx(q(t, h * hs + 2 * i + 1)).epsilon(1e-4).scale(1.0));
            }
}

// =============================================================================================
// Synthetic models: round trips and the bytes of the files
// =============================================================================================

TEST_CASE("synthetic model: GGUF and HF round trips are bit-exact (tied and untied classifier)") {
    TempDir tmp;
    const Llama2cTokenizer tok = byte_vocab_tokenizer({" a", " b", "ab"});
    for (bool shared : {true, false}) {
        CAPTURE(shared);
        const Model m = random_model_vocab(shared, shared ? 11u : 12u, tok.vocab_size());
        const fs::path g = tmp.path / (shared ? "tied.gguf" : "untied.gguf");
        save_gguf(m, tok, g);
        const LoadedModel lg = load_gguf(g);
        check_same_weights(m, lg.model);
        CHECK(lg.tokenizer.vocab_size() == tok.vocab_size());
        for (int id = 3; id < tok.vocab_size(); ++id) CHECK(lg.tokenizer.piece(id) == tok.piece(id));
        CHECK(lg.tokenizer.encode(" ab a b\n") == tok.encode(" ab a b\n"));

        const fs::path h = tmp.path / (shared ? "hf_tied" : "hf_untied");
        save_hf(m, h);
        const Model mh = load_hf(h);
        check_same_weights(m, mh);

        // Same weights, same RoPE tables: the logits agree exactly.
        const std::vector<int> toks{1, 259, 260, 261, 100, 5, 40};
        CHECK(forward(m, toks) == forward(lg.model, toks));
        CHECK(forward(m, toks) == forward(mh, toks));
    }
}

TEST_CASE("synthetic model: the GGUF file follows llama.cpp's conventions (read with the generic reader)") {
    TempDir tmp;
    const Llama2cTokenizer tok = byte_vocab_tokenizer({" a", "a b", ""});
    const Model m = random_model_vocab(true, 5, tok.vocab_size());
    const fs::path g = tmp.path / "m.gguf";
    save_gguf(m, tok, g);
    const ptq::io::GgufFile f(g);
    using ptq::io::GgufValueType;
    CHECK(f.find("general.architecture")->get<std::string>() == "llama");
    for (const char* k : {"llama.context_length", "llama.embedding_length", "llama.block_count",
                          "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                          "llama.rope.dimension_count", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
        INFO(k);
        REQUIRE(f.find(k) != nullptr);
        CHECK(f.find(k)->type() == GgufValueType::UINT32);  // llama.cpp refuses other widths
    }
    CHECK(f.find("llama.embedding_length")->get<std::uint32_t>() == 16);
    CHECK(f.find("llama.feed_forward_length")->get<std::uint32_t>() == 24);
    CHECK(f.find("llama.attention.head_count_kv")->get<std::uint32_t>() == 1);
    CHECK(f.find("llama.rope.dimension_count")->get<std::uint32_t>() == 8);
    CHECK(f.find("llama.context_length")->get<std::uint32_t>() == 16);
    CHECK(f.find("llama.attention.layer_norm_rms_epsilon")->get<float>() == 1e-5f);
    CHECK(f.find("llama.rope.freq_base")->get<float>() == 10000.0f);
    CHECK(f.find("tokenizer.ggml.model")->get<std::string>() == "llama");
    CHECK(f.find("tokenizer.ggml.bos_token_id")->get<std::uint32_t>() == 1);
    CHECK(f.find("tokenizer.ggml.eos_token_id")->get<std::uint32_t>() == 2);
    const auto& tokens = f.find("tokenizer.ggml.tokens")->get<std::vector<std::string>>();
    const auto& types = f.find("tokenizer.ggml.token_type")->get<std::vector<std::int32_t>>();
    const auto& scores = f.find("tokenizer.ggml.scores")->get<std::vector<float>>();
    REQUIRE(tokens.size() == 262);
    REQUIRE(types.size() == 262);
    REQUIRE(scores.size() == 262);
    CHECK(tokens[0] == "<unk>");
    CHECK(types[0] == 2);  // unknown
    CHECK(tokens[1] == "<s>");
    CHECK(types[1] == 3);  // control
    CHECK(tokens[2] == "</s>");
    CHECK(types[2] == 3);
    CHECK(tokens[3] == "<0x00>");
    CHECK(tokens[3 + 0x41] == "<0x41>");
    for (int i = 3; i < 259; ++i) CHECK(types[static_cast<std::size_t>(i)] == 6);  // byte
    CHECK(tokens[259] ==
          "\xE2\x96\x81"
          "a");  // " a" -> "▁a"
    CHECK(tokens[260] ==
          "a\xE2\x96\x81"
          "b");              // "a b" -> "a▁b"
    CHECK(types[259] == 1);  // normal
    CHECK(types[261] == 3);  // empty piece: control
    CHECK(scores[260] == -1.0f);
    // Tensors: tied classifier => no output.weight; ne fastest-first ([in, out]).
    CHECK_FALSE(f.contains("output.weight"));
    CHECK(f.tensors().size() == 2 + 2 * 9);
    auto ne = [&](const char* n) { return f.header().find_tensor(n)->ne; };
    CHECK(ne("token_embd.weight") == std::vector<std::uint64_t>{16, 262});
    CHECK(ne("output_norm.weight") == std::vector<std::uint64_t>{16});
    CHECK(ne("blk.1.attn_k.weight") == std::vector<std::uint64_t>{16, 8});
    CHECK(ne("blk.1.ffn_down.weight") == std::vector<std::uint64_t>{24, 16});
    CHECK(ne("blk.1.ffn_gate.weight") == std::vector<std::uint64_t>{16, 24});
    for (const auto& t : f.tensors()) CHECK(t.type == ptq::io::GgmlType::F32);
    // Data: blk.0.attn_q is wq row-major (no RoPE permutation for GGUF); ffn_gate is w1, ffn_up w3.
    const auto q = ptq::io::to_float(f.tensor("blk.0.attn_q.weight"));
    CHECK(std::memcmp(q.data(), m.layers[0].wq.data(), q.size() * 4) == 0);
    const auto up = ptq::io::to_float(f.tensor("blk.1.ffn_up.weight"));
    CHECK(std::memcmp(up.data(), m.layers[1].w3.data(), up.size() * 4) == 0);
}

TEST_CASE("synthetic model: the HF folder holds transformers' names, shapes and config") {
    TempDir tmp;
    const Model m = random_model(false, 9);
    save_hf(m, tmp.path / "hf");
    const ptq::io::SafetensorsFile st(tmp.path / "hf" / "model.safetensors");
    CHECK(st.metadata().at("format") == "pt");
    CHECK(st.tensors().size() == 3 + 2 * 9);
    auto shape = [&](const char* n) {
        const auto t = st.tensor(n);
        return std::vector<std::uint64_t>(t.shape.begin(), t.shape.end());
    };
    CHECK(shape("model.embed_tokens.weight") == std::vector<std::uint64_t>{32, 16});
    CHECK(shape("lm_head.weight") == std::vector<std::uint64_t>{32, 16});
    CHECK(shape("model.norm.weight") == std::vector<std::uint64_t>{16});
    CHECK(shape("model.layers.1.self_attn.k_proj.weight") == std::vector<std::uint64_t>{8, 16});
    CHECK(shape("model.layers.1.mlp.down_proj.weight") == std::vector<std::uint64_t>{16, 24});
    CHECK(shape("model.layers.0.mlp.gate_proj.weight") == std::vector<std::uint64_t>{24, 16});
    CHECK(shape("model.layers.0.input_layernorm.weight") == std::vector<std::uint64_t>{16});
    // v_proj is stored as it is, q_proj permuted per head (head size 8: rows 0,2,4,6,1,3,5,7).
    const auto v = ptq::io::to_float(st.tensor("model.layers.0.self_attn.v_proj.weight"));
    CHECK(std::memcmp(v.data(), m.layers[0].wv.data(), v.size() * 4) == 0);
    const RowMatrix q = ptq::io::to_matrix(st.tensor("model.layers.0.self_attn.q_proj.weight"));
    const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 8; ++k) CHECK(q.row(h * 8 + k) == m.layers[0].wq.row(h * 8 + order[k]));
    std::ifstream in(tmp.path / "hf" / "config.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    CHECK(j["architectures"][0] == "LlamaForCausalLM");
    CHECK(j["model_type"] == "llama");
    CHECK(j["hidden_size"] == 16);
    CHECK(j["intermediate_size"] == 24);
    CHECK(j["num_hidden_layers"] == 2);
    CHECK(j["num_attention_heads"] == 2);
    CHECK(j["num_key_value_heads"] == 1);
    CHECK(j["vocab_size"] == 32);
    CHECK(j["max_position_embeddings"] == 16);
    CHECK(j["rms_norm_eps"] == 1e-5);
    CHECK(j["rope_theta"] == 10000.0);
    CHECK(j["hidden_act"] == "silu");
    CHECK(j["tie_word_embeddings"] == false);
}

// =============================================================================================
// Bad files
// =============================================================================================

TEST_CASE("GGUF reader: missing, misshapen, extra tensors, other architectures and truncation are refused") {
    TempDir tmp;
    const Llama2cTokenizer tok = byte_vocab_tokenizer({" a"});
    const Model m = random_model_vocab(true, 21, tok.vocab_size());
    const fs::path good = tmp.path / "good.gguf";
    save_gguf(m, tok, good);
    REQUIRE_NOTHROW(load_gguf(good));
    using ptq::io::GgufMetadata;
    using ptq::io::GgufTensorData;
    auto bad = [&](const char* name, auto edit) {
        const fs::path p = tmp.path / name;
        rewrite_gguf(good, p, edit);
        const std::string msg = file_error_message([&] { load_gguf(p); });
        CHECK_MESSAGE(contains(msg, name), msg);  // names the file
        return msg;
    };
    std::string msg = bad("missing.gguf", [](GgufMetadata&, std::vector<GgufTensorData>& t) {
        std::erase_if(t, [](const GgufTensorData& x) { return x.name == "blk.1.attn_k.weight"; });
    });
    CHECK(contains(msg, "blk.1.attn_k.weight"));
    CHECK(contains(msg, "missing"));
    std::vector<float> wrong(24 * 8, 0.5f);
    msg = bad("shape.gguf", [&](GgufMetadata&, std::vector<GgufTensorData>& t) {
        for (auto& x : t)
            if (x.name == "blk.0.attn_k.weight") {
                x.ne = {24, 8};
                x.data = {reinterpret_cast<const std::byte*>(wrong.data()), wrong.size() * 4};
            }
    });
    CHECK(contains(msg, "blk.0.attn_k.weight"));
    CHECK(contains(msg, "[16, 8]"));
    std::vector<float> extra(16, 1.0f);
    msg = bad("extra.gguf", [&](GgufMetadata&, std::vector<GgufTensorData>& t) {
        t.push_back({"rope_freqs.weight",
                     ptq::io::GgmlType::F32,
                     {16},
                     {reinterpret_cast<const std::byte*>(extra.data()), 64}});
    });
    CHECK(contains(msg, "rope_freqs.weight"));
    msg = bad("arch.gguf",
              [](GgufMetadata& kv, std::vector<GgufTensorData>&) { set_kv(kv, "general.architecture", "gpt2"); });
    CHECK(contains(msg, "general.architecture"));
    CHECK(contains(msg, "gpt2"));
    msg = bad("width.gguf", [](GgufMetadata& kv, std::vector<GgufTensorData>&) {
        set_kv(kv, "llama.block_count", ptq::io::GgufValue(std::string("two")));
    });
    CHECK(contains(msg, "llama.block_count"));
    msg = bad("eps.gguf", [](GgufMetadata& kv, std::vector<GgufTensorData>&) {
        set_kv(kv, "llama.attention.layer_norm_rms_epsilon", ptq::io::GgufValue(1e-6f));
    });
    CHECK(contains(msg, "layer_norm_rms_epsilon"));
    msg = bad("tokenizer.gguf",
              [](GgufMetadata& kv, std::vector<GgufTensorData>&) { set_kv(kv, "tokenizer.ggml.model", "gpt2"); });
    CHECK(contains(msg, "tokenizer.ggml.model"));
    msg = bad("scores.gguf", [](GgufMetadata& kv, std::vector<GgufTensorData>&) {
        set_kv(kv, "tokenizer.ggml.scores", ptq::io::GgufValue(std::vector<float>(3, 0.0f)));
    });
    CHECK(contains(msg, "scores"));
    msg = bad("bytes.gguf", [](GgufMetadata& kv, std::vector<GgufTensorData>&) {
        for (auto& [k, v] : kv)
            if (k == "tokenizer.ggml.tokens") {
                auto t = v.get<std::vector<std::string>>();
                std::swap(t[10], t[11]);
                v = ptq::io::GgufValue(t);
            }
    });
    CHECK(contains(msg, "token 10"));
    // Truncated file: the generic reader refuses it, naming the file.
    const auto bytes = read_bytes(good);
    write_bytes(tmp.path / "cut.gguf", std::vector<char>(bytes.begin(), bytes.end() - 100));
    CHECK(contains(file_error_message([&] { load_gguf(tmp.path / "cut.gguf"); }), "cut.gguf"));
    CHECK(contains(file_error_message([&] { load_gguf(tmp.path / "absent.gguf"); }), "absent.gguf"));
}

TEST_CASE("HF reader: missing, misshapen tensors, other architectures, bad config and truncation are refused") {
    TempDir tmp;
    const Model m = random_model(true, 31);
    const fs::path good = tmp.path / "good";
    save_hf(m, good);
    REQUIRE_NOTHROW(load_hf(good));
    const ptq::io::SafetensorsFile st(good / "model.safetensors");
    auto variant = [&](const char* name, auto edit_tensors, auto edit_config) {
        const fs::path dir = tmp.path / name;
        fs::create_directories(dir);
        std::vector<ptq::io::TensorData> t;
        for (const auto& info : st.tensors()) {
            const auto v = st.tensor(info);
            t.push_back({info.name, v.dtype, info.shape, v.data});
        }
        edit_tensors(t);
        ptq::io::write_safetensors(dir / "model.safetensors", t);
        std::ifstream in(good / "config.json");
        nlohmann::json j = nlohmann::json::parse(in);
        edit_config(j);
        std::ofstream(dir / "config.json") << j.dump();
        return file_error_message([&] { load_hf(dir); });
    };
    auto same_config = [](nlohmann::json&) {};
    auto same_tensors = [](std::vector<ptq::io::TensorData>&) {};
    std::string msg = variant(
        "missing",
        [](auto& t) { std::erase_if(t, [](const auto& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; }); },
        same_config);
    CHECK(contains(msg, "model.layers.1.mlp.up_proj.weight"));
    CHECK(contains(msg, "missing"));
    CHECK(contains(msg, "model.safetensors"));
    msg = variant(
        "shape",
        [](auto& t) {
            for (auto& x : t)
                if (x.name == "model.layers.0.mlp.down_proj.weight") x.shape = {24, 16};
        },
        same_config);
    CHECK(contains(msg, "model.layers.0.mlp.down_proj.weight"));
    CHECK(contains(msg, "[16, 24]"));
    msg = variant("arch", same_tensors, [](nlohmann::json& j) {
        j["architectures"] = {"GPT2LMHeadModel"};
        j["model_type"] = "gpt2";
    });
    CHECK(contains(msg, "config.json"));
    CHECK(contains(msg, "GPT2LMHeadModel"));
    msg = variant("theta", same_tensors, [](nlohmann::json& j) { j["rope_theta"] = 500000.0; });
    CHECK(contains(msg, "rope_theta"));
    msg = variant("layers", same_tensors, [](nlohmann::json& j) { j.erase("num_hidden_layers"); });
    CHECK(contains(msg, "num_hidden_layers"));
    msg = variant("tie", same_tensors, [](nlohmann::json& j) { j["tie_word_embeddings"] = false; });
    CHECK(contains(msg, "tie_word_embeddings"));
    msg = variant(
        "extra",
        [&](auto& t) {
            t.push_back({"model.layers.0.self_attn.q_proj.bias",
                         ptq::io::DType::F32,
                         {16},
                         st.tensor("model.norm.weight").data});
        },
        same_config);
    CHECK(contains(msg, "q_proj.bias"));
    // Truncated safetensors and a missing config.json.
    fs::create_directories(tmp.path / "cut");
    fs::copy_file(good / "config.json", tmp.path / "cut" / "config.json");
    const auto bytes = read_bytes(good / "model.safetensors");
    write_bytes(tmp.path / "cut" / "model.safetensors", std::vector<char>(bytes.begin(), bytes.end() - 10));
    CHECK(contains(file_error_message([&] { load_hf(tmp.path / "cut"); }), "model.safetensors"));
    fs::create_directories(tmp.path / "noconfig");
    fs::copy_file(good / "model.safetensors", tmp.path / "noconfig" / "model.safetensors");
    CHECK(contains(file_error_message([&] { load_hf(tmp.path / "noconfig"); }), "config.json"));
}

// =============================================================================================
// llama-perplexity's chunked protocol
// =============================================================================================

TEST_CASE("chunked NLL: second half of each BOS-led chunk, == difference of two sequence NLLs") {
    const Model m = random_model(true, 41);  // seq_len 16, vocab 32
    std::mt19937 rng(5);
    std::vector<int> tokens(45);
    for (int& t : tokens) t = static_cast<int>(rng() % 32);
    const int n_ctx = 8;
    const ChunkedEvalResult r = evaluate_chunked(m, tokens, n_ctx);
    CHECK(r.chunks == 5);                       // 45 / 8, the remainder is dropped
    CHECK(r.result.predicted_tokens == 5 * 3);  // positions 4, 5, 6 predict 5, 6, 7
    // Oracle: chunk c with BOS first; NLL of the whole chunk minus NLL of its first n_ctx/2 + 1
    // tokens (causal attention: the prefix's logits are the same) = predictions at 4..6.
    double want = 0.0;
    for (int c = 0; c < 5; ++c) {
        std::vector<int> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        chunk[0] = Tokenizer::kBos;
        want += sequence_nll(m, chunk) - sequence_nll(m, std::span<const int>(chunk).first(n_ctx / 2 + 1));
    }
    CHECK(r.result.nll_sum == doctest::Approx(want).epsilon(1e-5));
    CHECK_THROWS_AS(evaluate_chunked(m, std::span<const int>(tokens).first(15), n_ctx), std::invalid_argument);
    CHECK_THROWS_AS(evaluate_chunked(m, tokens, 17), std::invalid_argument);  // > seq_len
}

// =============================================================================================
// The real model through the files
// =============================================================================================

TEST_CASE("real model: stories260K through GGUF and HF: same weights, fp32 mean NLL 1.2662" *
          doctest::skip(!have_data())) {
    const RealData& d = real();
    TempDir tmp;
    const fs::path g = tmp.path / "stories260K.gguf", h = tmp.path / "stories260K-hf";
    save_gguf(d.model, d.tok, g);
    save_hf(d.model, h);
    const LoadedModel lg = load_gguf(g);
    const Model mh = load_hf(h);
    check_same_weights(d.model, lg.model);
    check_same_weights(d.model, mh);

    // The GGUF vocabulary encodes the evaluation text exactly like tok512.bin.
    const auto stories = split_stories(read_text_file(valid_path()));
    const auto docs_gguf = encode_stories(lg.tokenizer, stories, lg.model.config.seq_len);
    CHECK(docs_gguf == d.docs);

    const EvalResult rg = evaluate(lg.model, docs_gguf);
    const EvalResult rh = evaluate(mh, d.docs);
    MESSAGE("GGUF: mean NLL " << rg.mean_nll() << ", HF: mean NLL " << rh.mean_nll() << " (reference 1.2662)");
    CHECK(rg.predicted_tokens == 84382);
    CHECK(rh.predicted_tokens == 84382);
    CHECK(std::abs(rg.mean_nll() - 1.2662) <= 1e-4);
    CHECK(std::abs(rh.mean_nll() - 1.2662) <= 1e-4);
    CHECK(rg.nll_sum == rh.nll_sum);  // identical weights, identical arithmetic

    // And back to llama2.c: the same weights as the original checkpoint.
    save_checkpoint(lg.model, tmp.path / "back.bin");
    check_same_weights(d.model, load_checkpoint(tmp.path / "back.bin"));
}

TEST_CASE("real model: Q8_0 and Q4_0 GGUF written by ptq read back to the weights and the NLL ptq measured" *
          doctest::skip(!have_data())) {
    const RealData& d = real();
    TempDir tmp;
    const EvalResult fp32 = evaluate(d.model, d.docs);
    for (GgufQuantType type : {GgufQuantType::q8_0, GgufQuantType::q4_0}) {
        const std::string name = gguf_quant_type_name(type);
        CAPTURE(name);
        const GgufQuantizedModel q = quantize_for_gguf(d.model, type);
        const EvalResult before = evaluate(q.model, d.docs);  // what ptq measures before writing
        const fs::path g = tmp.path / (name + ".gguf");
        save_gguf(q.model, d.tok, g, q.write_options(name));
        {
            // The blocks are in the file (w2, 172 wide, as F32 values), the rest F32.
            const ptq::io::GgufFile f(g);
            const auto want = type == GgufQuantType::q8_0 ? ptq::io::GgmlType::Q8_0 : ptq::io::GgmlType::Q4_0;
            CHECK(f.header().find_tensor("blk.0.attn_q.weight")->type == want);
            CHECK(f.header().find_tensor("blk.4.ffn_up.weight")->type == want);
            CHECK(f.header().find_tensor("blk.2.ffn_down.weight")->type == ptq::io::GgmlType::F32);
            CHECK(f.header().find_tensor("token_embd.weight")->type == ptq::io::GgmlType::F32);
            CHECK(f.find("general.file_type")->get<std::uint32_t>() == gguf_file_type(type));
        }
        const LoadedModel back = load_gguf(g);
        check_same_weights(q.model, back.model);  // ggml's dequantization == ptq's, bit for bit
        const EvalResult after = evaluate(back.model, d.docs);
        MESSAGE(name << ": mean NLL before writing " << before.mean_nll() << ", read back " << after.mean_nll()
                     << " (fp32 " << fp32.mean_nll() << ")");
        CHECK(after.nll_sum == before.nll_sum);
        CHECK(before.mean_nll() > fp32.mean_nll());  // quantization costs something...
        CHECK(before.mean_nll() < fp32.mean_nll() + (type == GgufQuantType::q8_0 ? 0.01 : 0.5));  // ...but not much
        bool changed = false;
        q.model.for_each_linear([&](int l, std::string_view n, const RowMatrix& w) {
            changed = changed || w != d.model.layers[static_cast<std::size_t>(l)].linear(n);
        });
        CHECK(changed);
    }
}
