#include "model_files.hpp"

#include "gguf_model.hpp"
#include "hf_model.hpp"
#include "llama2c_checkpoint.hpp"
#include "sp_tokenizer.hpp"

#include <ptq/gemv.hpp>
#include <ptq/io/gguf.hpp>
#include <ptq/io/gguf_blocks.hpp>
#include <ptq/quantize.hpp>
#include <ptq/io/safetensors_index.hpp>

#include <array>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <sstream>

namespace ptq::llama {

namespace {

bool starts_with_gguf(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    char m[4] = {};
    in.read(m, 4);
    return in.gcount() == 4 && std::string_view(m, 4) == "GGUF";
}

/// A SentencePiece tokenizer.model whose vocabulary has the model's size.
std::shared_ptr<const Tokenizer> load_sentencepiece(const std::filesystem::path& file, int vocab_size) {
    auto sp = std::make_shared<const ptq::tool::SentencePieceTokenizer>(file);
    if (sp->vocab_size() != vocab_size)
        throw ptq::file_error(file.string(), "vocabulary",
                              std::to_string(sp->vocab_size()) + " pieces, the model has " +
                                  std::to_string(vocab_size));
    return sp;
}

}  // namespace

InputModel load_model_file(const std::filesystem::path& path, const std::optional<std::filesystem::path>& tokenizer,
                           bool lazy) {
    InputModel in;
    LayerLoader* loader = lazy ? &in.load_layer : nullptr;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw ptq::file_error(path.string(), "open", "no such file or directory");
    if (std::filesystem::is_directory(path, ec)) {
        in.kind = InputKind::hf;
        in.model = load_hf(path, loader);
    } else if (starts_with_gguf(path)) {
        in.kind = InputKind::gguf;
        LoadedModel lm = load_gguf(path, loader);
        in.model = std::move(lm.model);
        in.llama2c_tokenizer = std::make_shared<const Llama2cTokenizer>(std::move(lm.tokenizer));
    } else {
        in.kind = InputKind::llama2c;
        in.model = load_checkpoint(path);
    }
    if (tokenizer) {
        if (tokenizer->extension() == ".model") {  // a SentencePiece model (Llama's tokenizer.model)
            in.tokenizer = load_sentencepiece(*tokenizer, in.model.config.vocab_size);
            in.llama2c_tokenizer.reset();
            return in;
        }
        in.llama2c_tokenizer =
            std::make_shared<const Llama2cTokenizer>(Llama2cTokenizer::load(*tokenizer, in.model.config.vocab_size));
    } else if (in.kind == InputKind::hf && std::filesystem::is_regular_file(path / "tokenizer.model", ec)) {
        in.tokenizer = load_sentencepiece(path / "tokenizer.model", in.model.config.vocab_size);  // the folder's own
        return in;
    }
    in.tokenizer = in.llama2c_tokenizer;
    return in;
}

namespace {

/// The PackedLinear of one GGUF tensor of format F (from_ggml), after checking that its
/// dequantized values are the float weights w the loader produced.
template <QuantFormat F>
std::shared_ptr<const PackedLinear> packed_from_gguf(const io::GgufTensorView& t, const RowMatrix& w,
                                                     const std::filesystem::path& path) {
    auto q = std::make_shared<const QuantizedMatrix<F>>(io::from_ggml<F>(t.type, t.ne, t.data, t.name));
    const RowMatrixXf d = ptq::dequantize(*q);
    // == rather than the bits: an all-zero block (d = -0 in ggml) reads as +0 in ptq.
    if (d.rows() != w.rows() || d.cols() != w.cols() || !(d.array() == w.array()).all())
        throw ptq::file_error(path.string(), "tensor '" + std::string(t.name) + "'",
                              "its packed codes do not dequantize to the weights read from the file");
    auto p = std::make_shared<PackedLinear>();
    p->type = std::string(io::ggml_type_name(t.type));
    p->product = [q](const RowMatrix& x) -> RowMatrix { return ptq::gemm(*q, x); };
    return p;
}

}  // namespace

int use_packed_linears(Model& m, const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec) || !starts_with_gguf(path)) return 0;
    const io::GgufFile f(path);
    int n = 0;
    for (int l = 0; l < static_cast<int>(m.layers.size()); ++l) {
        Layer& L = m.layers[static_cast<std::size_t>(l)];
        for (std::string_view name : kLinearNames) {
            const io::GgufTensorInfo* info = f.header().find_tensor(gguf_linear_name(l, name));
            if (info == nullptr)
                throw ptq::file_error(path.string(), "tensor '" + gguf_linear_name(l, name) + "'", "missing");
            const io::GgufTensorView t = f.tensor(*info);
            const RowMatrix& w = L.linear(name);
            std::shared_ptr<const PackedLinear> p;
            switch (t.type) {
                // Q4_0 / Q8_0 use the whole signed range (nibble 0 = -8, byte -128): IntRange::full.
                case io::GgmlType::Q4_0: p = packed_from_gguf<IntFormat<4, true, IntRange::full>>(t, w, path); break;
                case io::GgmlType::Q8_0: p = packed_from_gguf<IntFormat<8, true, IntRange::full>>(t, w, path); break;
                case io::GgmlType::Q4_1: p = packed_from_gguf<IntMinFormat<4>>(t, w, path); break;
                case io::GgmlType::MXFP4: p = packed_from_gguf<MxFp<2, 1, 32>>(t, w, path); break;
                default: break;  // F32 / F16 / BF16: the float product
            }
            if (p) {
                L.extras[linear_index(name)].packed = std::move(p);
                ++n;
            }
        }
    }
    return n;
}

namespace {

/// The quantization_config of the folder: the layers' common config plus the dense layers.
nlohmann::json hf_quantization_config(const std::vector<EncodedLinear>& ls, OutputFormat f) {
    nlohmann::json qc;
    std::vector<std::string> dense;
    for (const EncodedLinear& e : ls) {
        if (e.dense) {
            const std::string n = hf_linear_name(e.layer, kLinearNames[e.linear]);
            dense.push_back(n.substr(0, n.size() - 7));
        } else if (qc.is_null()) {
            qc = e.quantization_config;
        } else if (qc != e.quantization_config) {
            throw ptq::invalid_argument(
                "ptq::llama::write_quantized: the linears have different quantization "
                "configs: " +
                qc.dump() + " and " + e.quantization_config.dump());
        }
    }
    if (qc.is_null())
        throw ptq::invalid_argument(std::string("no linear of this model can be stored as ") + output_format_name(f) +
                                    " (every shape is refused by the layout)");
    if (!dense.empty()) {
        // Each consumer's way of leaving a module unquantized.
        if (f == OutputFormat::gptq) {
            nlohmann::json dyn = nlohmann::json::object();
            for (const auto& d : dense) dyn["-:" + d] = nlohmann::json::object();  // GPTQModel "dynamic" skip
            qc["dynamic"] = dyn;
        } else if (f == OutputFormat::awq) {
            qc["modules_to_not_convert"] = dense;
        } else if (f == OutputFormat::compressed_tensors) {
            for (const auto& d : dense) qc["ignore"].push_back(d);
        }
    }
    return qc;
}

}  // namespace

namespace {

std::span<const std::byte> float_bytes(const float* p, Eigen::Index n) {
    return {reinterpret_cast<const std::byte*>(p), static_cast<std::size_t>(n) * sizeof(float)};
}
std::span<const std::byte> bytes_of(const std::vector<std::uint8_t>& v) {
    return {reinterpret_cast<const std::byte*>(v.data()), v.size()};
}

/// "model.layers.<l>.<rest>" for a tensor name of layer 0 ("model.layers.0.<rest>").
std::string hf_layer_name(const std::string& layer0, int l) {
    static const std::string p0 = "model.layers.0.";
    return "model.layers." + std::to_string(l) + "." + layer0.substr(p0.size());
}

/// A quantized model file written layer by layer through the streaming tensor-file writers
/// (io::GgufStreamWriter, io::SafetensorsStreamWriter): the file's tensor directory is laid out
/// when layer 0 arrives, from the model's config and layer 0's encoded linears (every layer has
/// the same shapes, so the same types and tensor shapes); the embedding, final norm and
/// classifier are written then, each layer's norms and linears when it arrives; commit() writes
/// config.json (Hugging Face) and renames the output into place. Destroyed before commit(), it
/// leaves no output. Holds no tensor data between calls.
class QuantizedFileWriter {
public:
    QuantizedFileWriter(OutputFormat f, std::filesystem::path out, const Llama2cTokenizer* tok, std::string name)
        : f_(f), out_(std::move(out)), tok_(tok), name_(std::move(name)) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (f_ != OutputFormat::gguf && fs::exists(out_, ec) && !(fs::is_directory(out_, ec) && fs::is_empty(out_, ec)))
            throw ptq::file_error(out_.string(), "create", "exists and is not an empty directory");
    }
    QuantizedFileWriter(const QuantizedFileWriter&) = delete;
    QuantizedFileWriter& operator=(const QuantizedFileWriter&) = delete;
    ~QuantizedFileWriter() {
        writer_ = nullptr;  // the stream writers remove their temporary files
        gguf_.reset();
        safetensors_.reset();
        std::error_code ec;
        if (!tmp_.empty()) std::filesystem::remove_all(tmp_, ec);
    }

    /// Writes layer l of m (its norms, dense weights) with its encoded linears (any order).
    void add_layer(const Model& m, int l, const std::vector<EncodedLinear>& enc) {
        std::array<const EncodedLinear*, 7> by{};
        for (const EncodedLinear& e : enc) by.at(static_cast<std::size_t>(e.linear)) = &e;
        if (!writer_) open(m, by);
        const Config& c = m.config;
        const Layer& L = m.layers[static_cast<std::size_t>(l)];
        const bool gguf = f_ == OutputFormat::gguf;
        const std::string p = gguf ? "blk." + std::to_string(l) + "." : "model.layers." + std::to_string(l) + ".";
        writer_->write(p + (gguf ? "attn_norm.weight" : "input_layernorm.weight"),
                       float_bytes(L.rms_att.data(), c.dim));
        writer_->write(p + (gguf ? "ffn_norm.weight" : "post_attention_layernorm.weight"),
                       float_bytes(L.rms_ffn.data(), c.dim));
        for (int idx = 0; idx < 7; ++idx) {
            const std::string_view name = kLinearNames[idx];
            const EncodedLinear* e = by[static_cast<std::size_t>(idx)];
            const Plan& plan = plan_[static_cast<std::size_t>(idx)];
            if ((e && !e->dense) != plan.quantized || (e && gguf && !e->dense && e->ggml_type != plan.ggml_type))
                throw std::logic_error("ptq::llama::write_quantized: layer " + std::to_string(l) + " " +
                                       std::string(name) + " is not stored like layer 0's");
            if (plan.quantized) {
                if (gguf) writer_->write(gguf_linear_name(l, name), e->ggml_data);
                else
                    for (const io::LayerTensor& t : e->tensors) writer_->write(t.name, bytes_of(t.data));
                continue;
            }
            const RowMatrix& w = L.linear(name);
            const auto [rows, cols] = linear_shape(c, name);
            if (w.rows() != rows || w.cols() != cols)
                throw std::logic_error("ptq::llama::write_quantized: layer " + std::to_string(l) + " " +
                                       std::string(name) + " has no weights of its shape");
            if (gguf) writer_->write(gguf_linear_name(l, name), float_bytes(w.data(), w.size()));
            else if (idx <= 1) {  // q / k rows in transformers' rotate-half order
                const RowMatrix hf = rope_rows_to_rotate_half(w, idx == 0 ? c.n_heads : c.n_kv_heads);
                writer_->write(hf_linear_name(l, name), float_bytes(hf.data(), hf.size()));
            } else writer_->write(hf_linear_name(l, name), float_bytes(w.data(), w.size()));
        }
    }

    /// Finishes the output (every layer written: checked); `all`: every layer's encoded
    /// linears (their bytes may be released), for the Hugging Face quantization_config.
    /// Returns the bytes written.
    std::uintmax_t commit(const Config& c, const std::vector<EncodedLinear>& all) {
        namespace fs = std::filesystem;
        if (!writer_) throw std::logic_error("ptq::llama::write_quantized: no layer was written");
        writer_->commit();
        if (f_ == OutputFormat::gguf) return fs::file_size(out_);
        nlohmann::ordered_json cj = hf_config_json(c);
        cj["quantization_config"] = hf_quantization_config(all, f_);
        const std::string text = cj.dump(2) + "\n";
        io::AtomicFile cfg(tmp_ / "config.json");
        cfg.write(text.data(), text.size());
        cfg.commit();
        std::error_code ec;
        if (fs::exists(out_, ec)) fs::remove(out_, ec);
        fs::rename(tmp_, out_);
        tmp_.clear();
        std::uintmax_t bytes = 0;
        for (const auto& de : fs::directory_iterator(out_)) bytes += de.file_size();
        return bytes;
    }

private:
    /// How linear idx of every layer is stored (from layer 0).
    struct Plan {
        bool quantized = false;
        io::GgmlType ggml_type = io::GgmlType::F32;
        std::vector<io::SafetensorsEntry> tensors;  ///< Hugging Face: layer 0's, by name
    };

    void open(const Model& m, const std::array<const EncodedLinear*, 7>& by) {
        namespace fs = std::filesystem;
        const Config& c = m.config;
        (void)checkpoint_float_count(c, out_);  // validates the config
        detail::require_no_online_transform(m, "write_quantized");
        for (std::size_t idx = 0; idx < 7; ++idx) {
            const EncodedLinear* e = by[idx];
            plan_[idx].quantized = e && !e->dense;
            if (!plan_[idx].quantized) continue;
            plan_[idx].ggml_type = e->ggml_type;
            for (const io::LayerTensor& t : e->tensors)
                plan_[idx].tensors.push_back(
                    {t.name, t.dtype, std::vector<std::uint64_t>(t.shape.begin(), t.shape.end())});
        }
        const auto u = [](Eigen::Index n) { return static_cast<std::uint64_t>(n); };
        const Eigen::Index dim = c.dim, vocab = c.vocab_size;
        if (f_ == OutputFormat::gguf) {
            // The tensors of save_gguf, in its order.
            if (tok_ && tok_->vocab_size() != c.vocab_size)
                throw std::invalid_argument("ptq::llama::write_quantized: tokenizer has " +
                                            std::to_string(tok_->vocab_size()) + " tokens, the model's vocabulary " +
                                            std::to_string(c.vocab_size));
            GgufWriteOptions o;
            o.name = name_;
            for (const Plan& pl : plan_)  // llama_ftype MOSTLY_{Q8_0, Q4_0, Q4_1, MXFP4_MOE}
                if (pl.quantized)
                    o.file_type = pl.ggml_type == io::GgmlType::Q8_0   ? 7
                                  : pl.ggml_type == io::GgmlType::Q4_0 ? 2
                                  : pl.ggml_type == io::GgmlType::Q4_1 ? 3
                                                                       : 38;
            std::vector<io::GgufEntry> d;
            d.push_back({"token_embd.weight", io::GgmlType::F32, {u(dim), u(vocab)}});
            d.push_back({"output_norm.weight", io::GgmlType::F32, {u(dim)}});
            if (!c.shared_classifier) d.push_back({"output.weight", io::GgmlType::F32, {u(dim), u(vocab)}});
            for (int l = 0; l < c.n_layers; ++l) {
                const std::string blk = "blk." + std::to_string(l) + ".";
                d.push_back({blk + "attn_norm.weight", io::GgmlType::F32, {u(dim)}});
                d.push_back({blk + "ffn_norm.weight", io::GgmlType::F32, {u(dim)}});
                for (std::size_t idx = 0; idx < 7; ++idx) {
                    const auto [rows, cols] = linear_shape(c, kLinearNames[idx]);
                    d.push_back({gguf_linear_name(l, kLinearNames[idx]),
                                 plan_[idx].quantized ? plan_[idx].ggml_type : io::GgmlType::F32,
                                 {u(cols), u(rows)}});
                }
            }
            gguf_ = std::make_unique<io::GgufStreamWriter>(out_, gguf_metadata(c, tok_, o), d);
            writer_ = gguf_.get();
            writer_->write("token_embd.weight", float_bytes(m.token_embedding.data(), m.token_embedding.size()));
            writer_->write("output_norm.weight", float_bytes(m.rms_final.data(), dim));
            if (!c.shared_classifier)
                writer_->write("output.weight", float_bytes(m.classifier.data(), m.classifier.size()));
            return;
        }
        // Hugging Face folder (the tensors of save_hf): written under a temporary name beside
        // out, renamed at the end. The quantization_config is checked now (a linear stored).
        std::vector<EncodedLinear> layer0;
        for (const EncodedLinear* e : by)
            if (e) layer0.push_back({e->layer, e->linear, e->dense, {}, {}, {}, {}, e->quantization_config});
        (void)hf_quantization_config(layer0, f_);
        std::vector<io::SafetensorsEntry> d;
        d.push_back({"model.embed_tokens.weight", io::DType::F32, {u(vocab), u(dim)}});
        d.push_back({"model.norm.weight", io::DType::F32, {u(dim)}});
        if (!c.shared_classifier) d.push_back({"lm_head.weight", io::DType::F32, {u(vocab), u(dim)}});
        for (int l = 0; l < c.n_layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            d.push_back({p + "input_layernorm.weight", io::DType::F32, {u(dim)}});
            d.push_back({p + "post_attention_layernorm.weight", io::DType::F32, {u(dim)}});
            for (std::size_t idx = 0; idx < 7; ++idx) {
                if (!plan_[idx].quantized) {
                    const auto [rows, cols] = linear_shape(c, kLinearNames[idx]);
                    d.push_back({hf_linear_name(l, kLinearNames[idx]), io::DType::F32, {u(rows), u(cols)}});
                    continue;
                }
                for (const io::SafetensorsEntry& t : plan_[idx].tensors)
                    d.push_back({hf_layer_name(t.name, l), t.dtype, t.shape});
            }
        }
        const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");
        std::random_device rd;
        std::error_code ec;
        for (int i = 0;; ++i) {
            tmp_ = parent / ("." + out_.filename().string() + ".tmp" + std::to_string(rd() % 1000000));
            if (fs::create_directory(tmp_, ec)) break;
            if (i > 100) {
                const std::string t = tmp_.string();
                tmp_.clear();
                throw ptq::file_error(t, "create", ec ? ec.message() : "cannot create");
            }
        }
        safetensors_ = std::make_unique<io::SafetensorsStreamWriter>(tmp_ / "model.safetensors", d);
        writer_ = safetensors_.get();
        writer_->write("model.embed_tokens.weight", float_bytes(m.token_embedding.data(), m.token_embedding.size()));
        writer_->write("model.norm.weight", float_bytes(m.rms_final.data(), dim));
        if (!c.shared_classifier)
            writer_->write("lm_head.weight", float_bytes(m.classifier.data(), m.classifier.size()));
    }

    OutputFormat f_;
    std::filesystem::path out_;
    const Llama2cTokenizer* tok_;
    std::string name_;
    std::array<Plan, 7> plan_;
    std::filesystem::path tmp_;  ///< Hugging Face: the folder being written
    std::unique_ptr<io::GgufStreamWriter> gguf_;
    std::unique_ptr<io::SafetensorsStreamWriter> safetensors_;
    io::TensorFileWriter* writer_ = nullptr;  ///< the one of the two in use
};

}  // namespace

std::uintmax_t write_quantized(const QuantizedModel& q, OutputFormat f, const std::filesystem::path& out,
                               const Llama2cTokenizer* tokenizer, const std::string& name) {
    detail::require_no_online_transform(q.model, "write_quantized");  // before any file is created
    QuantizedFileWriter w(f, out, tokenizer, name);
    for (int l = 0; l < q.model.config.n_layers; ++l) {
        std::vector<EncodedLinear> layer;
        for (const EncodedLinear& e : q.linears)
            if (e.layer == l) layer.push_back(e);
        w.add_layer(q.model, l, layer);
    }
    return w.commit(q.model.config, q.linears);
}

QuantizedModel quantize_to_file(InputModel&& in, const RecipeSpec& r, CalibData* calib, QuantizeOptions o,
                                OutputFormat f, const std::filesystem::path& out, const std::string& name,
                                std::uintmax_t* bytes) {
    QuantizedFileWriter w(f, out, in.llama2c_tokenizer.get(), name);
    o.output = f;
    o.load_layer = std::move(in.load_layer);
    o.layer_done = [&](const Model& m, int l, const std::vector<EncodedLinear>& linears) {
        w.add_layer(m, l, linears);
    };
    QuantizedModel q = quantize_model(std::move(in.model), r, calib, o);
    const std::uintmax_t n = w.commit(q.model.config, q.linears);
    if (bytes) *bytes = n;
    return q;
}

std::string inspect_file(const std::filesystem::path& path) {
    std::ostringstream s;
    std::error_code ec;
    auto add_row = [&](const std::string& n, const std::string& type, const std::string& shape, double bits) {
        s << "  " << n << "  " << type << "  " << shape;
        if (bits > 0) s << "  " << bits << " bits/weight";
        s << "\n";
    };
    if (std::filesystem::is_directory(path, ec)) {
        const std::filesystem::path cfg = path / "config.json";
        std::ifstream in(cfg);
        if (!in) throw ptq::file_error(cfg.string(), "open", "cannot open (not a Hugging Face model folder?)");
        const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
        if (j.is_discarded()) throw ptq::file_error(cfg.string(), "json", "not valid JSON");
        s << "Hugging Face folder " << path.string() << "\n";
        if (j.contains("quantization_config")) s << "quantization_config: " << j["quantization_config"].dump() << "\n";
        else s << "quantization_config: none (dense)\n";
        const io::SafetensorsCheckpoint ck(path);
        s << "tensors (" << ck.size() << "):\n";
        for (const auto& n : ck.names()) {
            const io::TensorView t = ck.tensor(n);
            std::string shape = "[";
            for (std::size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
            add_row(n, std::string(io::dtype_name(t.dtype)), shape + "]", 0);
        }
        return s.str();
    }
    if (starts_with_gguf(path)) {
        const io::GgufFile f(path);
        s << "GGUF file " << path.string() << "\n";
        for (const auto& [k, v] : f.kv()) {
            if (k.rfind("tokenizer.ggml.", 0) == 0 && k != "tokenizer.ggml.model") continue;
            if (const auto* u = v.get_if<std::uint32_t>()) s << "  " << k << " = " << *u << "\n";
            else if (const auto* str = v.get_if<std::string>()) s << "  " << k << " = " << *str << "\n";
        }
        s << "tensors (" << f.tensors().size() << "):\n";
        for (const auto& t : f.tensors()) {
            std::string shape = "[";
            for (std::size_t i = 0; i < t.ne.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.ne[i]);
            const double n = static_cast<double>(t.numel());
            add_row(t.name, std::string(io::ggml_type_name(t.type)), shape + "] (ne)",
                    n > 0 ? 8.0 * static_cast<double>(t.nbytes()) / n : 0);
        }
        return s.str();
    }
    const Model m = load_checkpoint(path);
    const Config& c = m.config;
    s << "llama2.c checkpoint " << path.string() << ": dim " << c.dim << ", hidden " << c.hidden_dim << ", layers "
      << c.n_layers << ", heads " << c.n_heads << "/" << c.n_kv_heads << " kv, vocab " << c.vocab_size << ", seq_len "
      << c.seq_len << ", " << (c.shared_classifier ? "shared" : "separate") << " classifier; all tensors F32\n";
    return s.str();
}

}  // namespace ptq::llama
