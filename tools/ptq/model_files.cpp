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

#include <fstream>
#include <map>
#include <random>
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

InputModel load_model_file(const std::filesystem::path& path, const std::optional<std::filesystem::path>& tokenizer) {
    InputModel in;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw ptq::file_error(path.string(), "open", "no such file or directory");
    if (std::filesystem::is_directory(path, ec)) {
        in.kind = InputKind::hf;
        in.model = load_hf(path);
    } else if (starts_with_gguf(path)) {
        in.kind = InputKind::gguf;
        LoadedModel lm = load_gguf(path);
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

std::uintmax_t write_quantized(const QuantizedModel& q, OutputFormat f, const std::filesystem::path& out,
                               const Llama2cTokenizer* tokenizer, const std::string& name) {
    namespace fs = std::filesystem;
    detail::require_no_online_transform(q.model, "write_quantized");  // before any file is created
    std::map<std::pair<int, int>, const EncodedLinear*> by;
    for (const EncodedLinear& e : q.linears) by[{e.layer, e.linear}] = &e;
    if (f == OutputFormat::gguf) {
        GgufWriteOptions o;
        o.name = name;
        o.encode = [&](int layer, std::string_view linear, const RowMatrix& w) -> GgufEncodedWeight {
            const auto it = by.find({layer, linear_index(linear)});
            if (it == by.end() || it->second->dense) {  // F32: the dequantized weights
                const auto* b = reinterpret_cast<const std::byte*>(w.data());
                return {io::GgmlType::F32, std::vector<std::byte>(b, b + w.size() * sizeof(float))};
            }
            return {it->second->ggml_type, it->second->ggml_data};
        };
        std::uint32_t ft = 0;
        for (const auto& e : q.linears)
            if (!e.dense)
                ft = e.ggml_type == io::GgmlType::Q8_0   ? 7
                     : e.ggml_type == io::GgmlType::Q4_0 ? 2
                     : e.ggml_type == io::GgmlType::Q4_1 ? 3
                                                         : 38;  // llama_ftype MOSTLY_{Q8_0, Q4_0, Q4_1, MXFP4_MOE}
        o.file_type = ft;
        save_gguf(q.model, tokenizer, out, o);
        return fs::file_size(out);
    }
    // Hugging Face folder: written under a temporary name beside `out`, renamed at the end.
    std::error_code ec;
    if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
        throw ptq::file_error(out.string(), "create", "exists and is not an empty directory");
    HfWriteOptions o;
    o.quantization_config = hf_quantization_config(q.linears, f);
    o.quantized = [&](int layer, int linear) -> const std::vector<io::LayerTensor>* {
        const auto it = by.find({layer, linear});
        return it == by.end() || it->second->dense ? nullptr : &it->second->tensors;
    };
    const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
    fs::path tmp;
    std::random_device rd;
    for (int i = 0;; ++i) {
        tmp = parent / ("." + out.filename().string() + ".tmp" + std::to_string(rd() % 1000000));
        if (fs::create_directory(tmp, ec)) break;
        if (i > 100) throw ptq::file_error(tmp.string(), "create", ec ? ec.message() : "cannot create");
    }
    try {
        save_hf(q.model, tmp, o);
        if (fs::exists(out, ec)) fs::remove(out, ec);
        fs::rename(tmp, out);
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    std::uintmax_t bytes = 0;
    for (const auto& de : fs::directory_iterator(out)) bytes += de.file_size();
    return bytes;
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
