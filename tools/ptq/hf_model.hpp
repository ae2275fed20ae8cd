// ptq::llama <-> Hugging Face folder: `model.safetensors` (or a sharded checkpoint with
// `model.safetensors.index.json`) plus `config.json` for transformers' LlamaForCausalLM.
//
// Tensor names (transformers' modeling_llama): model.embed_tokens.weight, model.norm.weight,
// lm_head.weight (only for a separate classifier; tie_word_embeddings = true otherwise),
// model.layers.N.{input_layernorm, post_attention_layernorm}.weight,
// model.layers.N.self_attn.{q,k,v,o}_proj.weight, model.layers.N.mlp.{gate,up,down}_proj.weight
// (gate = w1, up = w3, down = w2). Every weight is [out x in] row-major, as in the harness.
//
// RoPE: llama2.c (and llama.cpp) rotate adjacent pairs (2i, 2i+1) of each head; transformers'
// Llama rotates halves (i, i + head_size/2). The same model in HF layout therefore has the rows
// of q_proj (per query head) and k_proj (per key/value head) permuted: HF row j*half + i of a
// head is llama2.c row 2i + j (j in {0, 1}, i < half = head_size/2) — the permutation of Meta's
// convert_llama_weights_to_hf.py. Whole rows move, nothing is rounded: the round trip is exact.
//
// config.json fields the reader requires: architectures containing "LlamaForCausalLM" or
// model_type "llama"; hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// vocab_size, max_position_embeddings. Optional, checked against what the harness implements:
// num_key_value_heads (default num_attention_heads), head_dim (= hidden/heads), hidden_act
// ("silu"), rms_norm_eps (1e-5), rope_theta (10000), rope_scaling (null), attention_bias /
// mlp_bias (false), tie_word_embeddings (default true here: lm_head.weight decides).
#pragma once

#include "llama2c_checkpoint.hpp"

#include <ptq/io/awq_layout.hpp>
#include <ptq/io/compressed_tensors_layout.hpp>
#include <ptq/io/gptq_layout.hpp>
#include "model.hpp"
#include "tokenizer.hpp"

#include <ptq/error.hpp>
#include <ptq/io/atomic_file.hpp>
#include <ptq/io/safetensors.hpp>
#include <ptq/io/safetensors_index.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

/// HF name of linear `name` ("wq" ... "w3") of layer `layer`.
inline std::string hf_linear_name(int layer, std::string_view name) {
    static constexpr std::string_view kHf[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.down_proj",
                                                "mlp.up_proj"};
    return "model.layers." + std::to_string(layer) + "." + std::string(kHf[linear_index(name)]) + ".weight";
}

/// Rows of a q or k weight ([n_heads * head_size x in]) from llama2.c's adjacent-pair order to
/// transformers' rotate-half order: out row h*hs + j*half + i = in row h*hs + 2i + j.
inline RowMatrix rope_rows_to_rotate_half(const RowMatrix& w, int n_heads) {
    if (n_heads <= 0 || w.rows() % n_heads != 0 || (w.rows() / n_heads) % 2 != 0)
        throw std::invalid_argument("ptq::llama::rope_rows_to_rotate_half: " + std::to_string(w.rows()) +
                                    " rows are not n_heads = " + std::to_string(n_heads) + " heads of even size");
    const Eigen::Index hs = w.rows() / n_heads, half = hs / 2;
    RowMatrix out(w.rows(), w.cols());
    for (Eigen::Index h = 0; h < n_heads; ++h)
        for (Eigen::Index i = 0; i < half; ++i)
            for (Eigen::Index j = 0; j < 2; ++j) out.row(h * hs + j * half + i) = w.row(h * hs + 2 * i + j);
    return out;
}

/// The inverse of rope_rows_to_rotate_half: out row h*hs + 2i + j = in row h*hs + j*half + i.
inline RowMatrix rope_rows_to_adjacent_pairs(const RowMatrix& w, int n_heads) {
    if (n_heads <= 0 || w.rows() % n_heads != 0 || (w.rows() / n_heads) % 2 != 0)
        throw std::invalid_argument("ptq::llama::rope_rows_to_adjacent_pairs: " + std::to_string(w.rows()) +
                                    " rows are not n_heads = " + std::to_string(n_heads) + " heads of even size");
    const Eigen::Index hs = w.rows() / n_heads, half = hs / 2;
    RowMatrix out(w.rows(), w.cols());
    for (Eigen::Index h = 0; h < n_heads; ++h)
        for (Eigen::Index i = 0; i < half; ++i)
            for (Eigen::Index j = 0; j < 2; ++j) out.row(h * hs + 2 * i + j) = w.row(h * hs + j * half + i);
    return out;
}

/// transformers' config.json of `c` (LlamaForCausalLM, float32).
inline nlohmann::ordered_json hf_config_json(const Config& c) {
    nlohmann::ordered_json j;
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["hidden_size"] = c.dim;
    j["intermediate_size"] = c.hidden_dim;
    j["num_hidden_layers"] = c.n_layers;
    j["num_attention_heads"] = c.n_heads;
    j["num_key_value_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_size();
    j["vocab_size"] = c.vocab_size;
    j["max_position_embeddings"] = c.seq_len;
    j["hidden_act"] = "silu";
    j["rms_norm_eps"] = 1e-5;
    j["rope_theta"] = 10000.0;
    j["rope_scaling"] = nullptr;
    j["attention_bias"] = false;
    j["attention_dropout"] = 0.0;
    j["mlp_bias"] = false;
    j["initializer_range"] = 0.02;
    j["pretraining_tp"] = 1;
    j["tie_word_embeddings"] = c.shared_classifier;
    j["bos_token_id"] = Tokenizer::kBos;
    j["eos_token_id"] = Tokenizer::kEos;
    j["torch_dtype"] = "float32";
    j["use_cache"] = true;
    return j;
}

/// Writes `m` into the folder `dir` (created if needed) as model.safetensors (F32, q/k rows in
/// rotate-half order) and config.json. Each file is written all or nothing. Throws
/// std::invalid_argument for shapes that disagree with the config, ptq::file_error for I/O.
/// Options of save_hf for a quantized model: `quantized(layer, linear index)` returns the
/// tensors that store that linear in a consumer's layout (named "<hf prefix>.<suffix>", q/k
/// rows already in rotate-half order) or nullptr to store the model's dense weight; the
/// `quantization_config` goes into config.json.
struct HfWriteOptions {
    std::function<const std::vector<io::LayerTensor>*(int layer, int linear)> quantized;
    nlohmann::json quantization_config;
};

inline void save_hf(const Model& m, const std::filesystem::path& dir, const HfWriteOptions& options = {}) {
    const Config& c = m.config;
    (void)checkpoint_float_count(c, dir);  // validates the config
    detail::require_no_online_transform(m, "save_hf");
    if (m.layers.size() != static_cast<std::size_t>(c.n_layers))
        throw std::invalid_argument("ptq::llama::save_hf: layers.size() != n_layers");
    std::vector<RowMatrix> permuted;  // q/k in HF order (kept alive until written)
    permuted.reserve(2 * m.layers.size());
    std::vector<io::TensorData> tensors;
    auto add = [&](std::string name, const float* p, Eigen::Index rows, Eigen::Index cols, Eigen::Index want_rows,
                   Eigen::Index want_cols, bool matrix) {
        if (rows != want_rows || cols != want_cols)
            throw std::invalid_argument("ptq::llama::save_hf: " + name + " is " + std::to_string(rows) + " x " +
                                        std::to_string(cols) + ", expected " + std::to_string(want_rows) + " x " +
                                        std::to_string(want_cols));
        std::vector<std::uint64_t> shape{static_cast<std::uint64_t>(rows)};
        if (matrix) shape.push_back(static_cast<std::uint64_t>(cols));
        tensors.push_back(
            {std::move(name),
             io::DType::F32,
             std::move(shape),
             {reinterpret_cast<const std::byte*>(p), static_cast<std::size_t>(rows * cols) * sizeof(float)}});
    };
    const Eigen::Index dim = c.dim, vocab = c.vocab_size;
    add("model.embed_tokens.weight", m.token_embedding.data(), m.token_embedding.rows(), m.token_embedding.cols(),
        vocab, dim, true);
    add("model.norm.weight", m.rms_final.data(), m.rms_final.size(), 1, dim, 1, false);
    if (!c.shared_classifier)
        add("lm_head.weight", m.classifier.data(), m.classifier.rows(), m.classifier.cols(), vocab, dim, true);
    for (int l = 0; l < c.n_layers; ++l) {
        const Layer& L = m.layers[static_cast<std::size_t>(l)];
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", L.rms_att.data(), L.rms_att.size(), 1, dim, 1, false);
        add(p + "post_attention_layernorm.weight", L.rms_ffn.data(), L.rms_ffn.size(), 1, dim, 1, false);
        for (std::string_view name : kLinearNames) {
            if (const auto* qt = options.quantized ? options.quantized(l, linear_index(name)) : nullptr) {
                for (const io::LayerTensor& t : *qt) {
                    std::vector<std::uint64_t> shape(t.shape.begin(), t.shape.end());
                    tensors.push_back({t.name,
                                       t.dtype,
                                       std::move(shape),
                                       {reinterpret_cast<const std::byte*>(t.data.data()), t.data.size()}});
                }
                continue;
            }
            const RowMatrix* w = &L.linear(name);
            const auto [rows, cols] = linear_shape(c, name);
            if (w->rows() == rows && w->cols() == cols && (name == "wq" || name == "wk")) {
                permuted.push_back(rope_rows_to_rotate_half(*w, name == "wq" ? c.n_heads : c.n_kv_heads));
                w = &permuted.back();
            }
            add(hf_linear_name(l, name), w->data(), w->rows(), w->cols(), rows, cols, true);
        }
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw ptq::file_error(dir.string(), "create", ec.message());
    io::write_safetensors(dir / "model.safetensors", tensors);
    nlohmann::ordered_json cj = hf_config_json(c);
    if (!options.quantization_config.is_null()) cj["quantization_config"] = options.quantization_config;
    const std::string text = cj.dump(2) + "\n";
    io::AtomicFile cfg(dir / "config.json");
    cfg.write(text.data(), text.size());
    cfg.commit();
}

namespace detail {

struct HfConfigReader {
    std::string file;
    const nlohmann::json& j;

    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        throw ptq::file_error(file, "key '" + key + "'", what);
    }
    bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }
    int integer(const char* key, long long lo, long long hi) const {
        if (!j.contains(key)) fail(key, "missing");
        const nlohmann::json& v = j.at(key);
        if (!v.is_number_integer()) fail(key, "expected an integer, found " + v.dump());
        const long long x = v.get<long long>();
        if (x < lo || x > hi)
            fail(key, std::to_string(x) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return static_cast<int>(x);
    }
    double number(const char* key) const {
        const nlohmann::json& v = j.at(key);
        if (!v.is_number()) fail(key, "expected a number, found " + v.dump());
        return v.get<double>();
    }
    bool boolean(const char* key) const {
        const nlohmann::json& v = j.at(key);
        if (!v.is_boolean()) fail(key, "expected true or false, found " + v.dump());
        return v.get<bool>();
    }
};

/// The quantization_config of a quantized folder: GPTQ, AWQ or compressed-tensors.
struct HfQuantization {
    std::string method;
    io::GptqConfig gptq;
    io::AwqConfig awq;
    io::CtConfig ct;
};

inline HfQuantization hf_quantization(const std::string& file, const nlohmann::json& q) {
    HfQuantization h;
    if (!q.is_object() || !q.contains("quant_method") || !q["quant_method"].is_string())
        throw ptq::file_error(file, "key 'quantization_config.quant_method'", "missing or not a string");
    h.method = q["quant_method"].get<std::string>();
    try {
        if (h.method == "gptq") h.gptq = io::gptq_config_from_json(q);
        else if (h.method == "awq") h.awq = io::awq_config_from_json(q);
        else if (h.method == "compressed-tensors") h.ct = io::ct_config_from_json(q);
        else
            throw ptq::file_error(file, "key 'quantization_config.quant_method'",
                                  "'" + h.method + "' is not supported (gptq, awq, compressed-tensors)");
    } catch (const ptq::invalid_argument& e) {
        throw ptq::file_error(file, "key 'quantization_config'", e.what());
    }
    return h;
}

/// The float matrix [rows x cols] of an F32 / F16 / BF16 tensor of a mapped checkpoint, whose
/// pages are released once converted (release_mapped_pages).
inline RowMatrix hf_float_matrix(const io::TensorView& t, Eigen::Index rows, Eigen::Index cols) {
    RowMatrix w(rows, cols);
    io::decode_to_float(t.dtype, t.data, std::span<float>(w.data(), static_cast<std::size_t>(w.size())));
    release_mapped_pages(t.data);
    return w;
}

/// The dense weight [rows x cols] of linear `prefix` of a quantized folder, dequantized with
/// the consumer's own formula (io::dequantize_gptq / _awq / _compressed_tensors).
inline RowMatrix hf_dequantize_linear(const io::SafetensorsCheckpoint& ck, const std::string& ck_name,
                                      const std::string& prefix, const HfQuantization& q, Eigen::Index rows,
                                      Eigen::Index cols, std::set<std::string, std::less<>>& used) {
    std::vector<io::LayerTensor> ts;
    for (const char* suffix : {"qweight", "qzeros", "scales", "g_idx", "weight_packed", "weight_shape", "weight_scale",
                               "weight_zero_point", "weight_g_idx", "weight"}) {
        const std::string n = prefix + "." + suffix;
        if (!ck.contains(n)) continue;
        used.insert(n);
        const io::TensorView v = ck.tensor(n);
        io::LayerTensor t;
        t.name = n;
        t.dtype = v.dtype;
        t.shape.assign(v.shape.begin(), v.shape.end());
        const auto* b = reinterpret_cast<const std::uint8_t*>(v.data.data());
        t.data.assign(b, b + v.data.size());
        ts.push_back(std::move(t));
    }
    if (ts.empty()) throw ptq::file_error(ck_name, "tensor '" + prefix + ".*'", "missing (no quantized tensors)");
    RowMatrixXf w;
    try {
        if (q.method == "gptq") w = io::dequantize_gptq(ts, prefix, q.gptq);
        else if (q.method == "awq") w = io::dequantize_awq(ts, prefix, q.awq);
        else w = io::dequantize_compressed_tensors(ts, prefix, q.ct);
    } catch (const ptq::invalid_argument& e) {
        throw ptq::file_error(ck_name, "tensor '" + prefix + "'", e.what());
    }
    if (w.rows() != rows || w.cols() != cols)
        throw ptq::file_error(ck_name, "tensor '" + prefix + "'",
                              "dequantizes to " + std::to_string(w.rows()) + " x " + std::to_string(w.cols()) +
                                  ", expected " + std::to_string(rows) + " x " + std::to_string(cols));
    return w;
}

}  // namespace detail

/// Reads a folder written by save_hf (or by transformers for this model family): config.json
/// and model.safetensors or a sharded checkpoint. Tensors may be F32, F16 or BF16. Throws
/// ptq::file_error naming the file and the key or tensor on any mismatch (unknown architecture,
/// missing or extra tensor, wrong shape, unsupported hyper-parameter).
/// With `lazy` and a folder that is not quantized, the linears are checked (present, shape,
/// dtype) but not read: the returned model's linears are empty and *lazy reads one layer's on
/// demand (it keeps the checkpoint mapped). A quantized folder is read whole (*lazy left empty).
inline Model load_hf(const std::filesystem::path& dir, LayerLoader* lazy = nullptr) {
    const std::filesystem::path cfg_path = dir / "config.json";
    std::ifstream in(cfg_path, std::ios::binary);
    if (!in) throw ptq::file_error(cfg_path.string(), "open", "cannot open (not a Hugging Face model folder?)");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw ptq::file_error(cfg_path.string(), "json", std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw ptq::file_error(cfg_path.string(), "json", "not a JSON object");
    const detail::HfConfigReader r{cfg_path.string(), j};

    bool llama = j.contains("model_type") && j["model_type"] == "llama";
    if (j.contains("architectures") && j["architectures"].is_array())
        for (const auto& a : j["architectures"]) llama = llama || a == "LlamaForCausalLM";
    if (!llama)
        r.fail("architectures", "unsupported architecture " +
                                    (j.contains("architectures") ? j["architectures"].dump() : "(none)") +
                                    " / model_type " + (j.contains("model_type") ? j["model_type"].dump() : "(none)") +
                                    " (only LlamaForCausalLM / llama)");
    Model m;
    Config& c = m.config;
    constexpr long long kMax = 1 << 20;
    c.dim = r.integer("hidden_size", 1, kMax);
    c.hidden_dim = r.integer("intermediate_size", 1, kMax);
    c.n_layers = r.integer("num_hidden_layers", 1, 4096);
    c.n_heads = r.integer("num_attention_heads", 1, kMax);
    c.n_kv_heads = r.has("num_key_value_heads") ? r.integer("num_key_value_heads", 1, kMax) : c.n_heads;
    c.vocab_size = r.integer("vocab_size", 1, kMax);
    c.seq_len = r.integer("max_position_embeddings", 1, kMax);
    if (r.has("head_dim") && c.dim % c.n_heads == 0 && r.integer("head_dim", 1, kMax) != c.dim / c.n_heads)
        r.fail("head_dim", "must be hidden_size / num_attention_heads = " + std::to_string(c.dim / c.n_heads));
    if (r.has("hidden_act") && j["hidden_act"] != "silu")
        r.fail("hidden_act", j["hidden_act"].dump() + " is not supported (silu only)");
    if (r.has("rms_norm_eps") && std::abs(r.number("rms_norm_eps") - 1e-5) > 1e-9)
        r.fail("rms_norm_eps", j["rms_norm_eps"].dump() + "; the harness implements 1e-5");
    if (r.has("rope_theta") && r.number("rope_theta") != 10000.0)
        r.fail("rope_theta", j["rope_theta"].dump() + "; the harness implements 10000");
    if (r.has("rope_scaling")) r.fail("rope_scaling", "RoPE scaling is not supported");
    for (const char* k : {"attention_bias", "mlp_bias"})
        if (r.has(k) && r.boolean(k)) r.fail(k, "biases are not supported");
    (void)checkpoint_float_count(c, cfg_path);  // the structural checks of a llama2.c header

    std::optional<detail::HfQuantization> quant;
    if (j.contains("quantization_config")) quant = detail::hf_quantization(cfg_path.string(), j["quantization_config"]);
    const auto ckp = std::make_shared<const io::SafetensorsCheckpoint>(dir);
    const io::SafetensorsCheckpoint& ck = *ckp;
    const bool defer = lazy != nullptr && !quant;
    const std::string ck_name =
        (dir / (std::filesystem::exists(dir / io::safetensors_index_name) ? std::string(io::safetensors_index_name)
                                                                          : std::string("model.safetensors")))
            .string();
    c.shared_classifier = !ck.contains("lm_head.weight");
    if (r.has("tie_word_embeddings") && r.boolean("tie_word_embeddings") != c.shared_classifier)
        r.fail("tie_word_embeddings", c.shared_classifier ? "is false but the checkpoint has no lm_head.weight"
                                                          : "is true but the checkpoint has lm_head.weight");
    std::set<std::string, std::less<>> used;
    auto check = [&](const std::string& name, Eigen::Index rows, Eigen::Index cols, bool matrix) -> io::TensorView {
        if (!ck.contains(name)) throw ptq::file_error(ck_name, "tensor '" + name + "'", "missing");
        used.insert(name);
        const io::TensorView t = ck.tensor(name);
        const std::vector<std::uint64_t> want =
            matrix ? std::vector<std::uint64_t>{static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols)}
                   : std::vector<std::uint64_t>{static_cast<std::uint64_t>(rows)};
        if (!std::equal(t.shape.begin(), t.shape.end(), want.begin(), want.end())) {
            auto show = [](auto&& s) {
                std::string out = "[";
                for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
                return out + "]";
            };
            throw ptq::file_error(std::string(t.file), "tensor '" + name + "'",
                                  "shape is " + show(t.shape) + ", expected " + show(want));
        }
        if (t.dtype != io::DType::F32 && t.dtype != io::DType::F16 && t.dtype != io::DType::BF16)
            throw ptq::file_error(std::string(t.file), "tensor '" + name + "'",
                                  "dtype " + std::string(io::dtype_name(t.dtype)) +
                                      " is not supported (F32, F16, BF16)");
        return t;
    };
    auto fetch = [&](const std::string& name, Eigen::Index rows, Eigen::Index cols, bool matrix) -> RowMatrix {
        return detail::hf_float_matrix(check(name, rows, cols, matrix), rows, cols);
    };
    auto fetch_vector = [&](const std::string& name, Eigen::Index n) -> Vector {
        const RowMatrix w = fetch(name, n, 1, false);
        return Eigen::Map<const Vector>(w.data(), n);
    };
    const Eigen::Index dim = c.dim, vocab = c.vocab_size;
    m.token_embedding = fetch("model.embed_tokens.weight", vocab, dim, true);
    m.rms_final = fetch_vector("model.norm.weight", dim);
    if (!c.shared_classifier) m.classifier = fetch("lm_head.weight", vocab, dim, true);
    m.layers.resize(static_cast<std::size_t>(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l) {
        Layer& L = m.layers[static_cast<std::size_t>(l)];
        const std::string p = "model.layers." + std::to_string(l) + ".";
        L.rms_att = fetch_vector(p + "input_layernorm.weight", dim);
        L.rms_ffn = fetch_vector(p + "post_attention_layernorm.weight", dim);
        for (std::string_view name : kLinearNames) {
            const auto [rows, cols] = linear_shape(c, name);
            const std::string wname = hf_linear_name(l, name);
            const std::string prefix = wname.substr(0, wname.size() - 7);  // without ".weight"
            if (defer) {                                                   // read by *lazy
                (void)check(wname, rows, cols, true);
                continue;
            }
            RowMatrix w = quant && !(ck.contains(wname) && !ck.contains(prefix + ".weight_scale"))
                              ? detail::hf_dequantize_linear(ck, ck_name, prefix, *quant, rows, cols, used)
                              : fetch(wname, rows, cols, true);
            if (name == "wq") w = rope_rows_to_adjacent_pairs(w, c.n_heads);
            if (name == "wk") w = rope_rows_to_adjacent_pairs(w, c.n_kv_heads);
            L.linear(name) = std::move(w);
        }
    }
    // Old transformers checkpoints also store each layer's RoPE frequencies (derived from
    // rope_theta, checked above): the only tensors tolerated beyond the model's.
    auto derived = [](std::string_view n) {
        constexpr std::string_view suffix = ".self_attn.rotary_emb.inv_freq";
        return n.size() >= suffix.size() && n.substr(n.size() - suffix.size()) == suffix;
    };
    for (const std::string& name : ck.names())
        if (!used.count(name) && !derived(name))
            throw ptq::file_error(ck_name, "tensor '" + name + "'", "not part of the llama model (unexpected tensor)");
    if (defer)
        *lazy = [ckp, c](int l, Layer& L) {
            for (std::string_view name : kLinearNames) {
                const auto [rows, cols] = linear_shape(c, name);
                RowMatrix w = detail::hf_float_matrix(ckp->tensor(hf_linear_name(l, name)), rows, cols);
                if (name == "wq") w = rope_rows_to_adjacent_pairs(w, c.n_heads);
                if (name == "wk") w = rope_rows_to_adjacent_pairs(w, c.n_kv_heads);
                L.linear(name) = std::move(w);
            }
        };
    compute_rope_tables(m);
    return m;
}

}  // namespace ptq::llama
