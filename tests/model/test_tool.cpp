// The ptq tool end to end on the real model: quantize with a recipe, write each output format,
// read the file back through the importers (the consumers' own dequantization) and check that
// its NLL equals the in-memory evaluation of the same quantized model; the GGUF and HF inputs
// made by the converters give the llama2.c input's NLL; the command's error paths.
#include "support.hpp"

#include "gguf_model.hpp"
#include "hf_model.hpp"
#include "model_files.hpp"
#include "quantize_model.hpp"
#include "recipe.hpp"
#include "rotation.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

namespace ptq_model_test {
namespace {

// A 60-story slice of the evaluation set keeps the suite fast; every comparison below is
// between two evaluations of the same slice.
std::vector<std::vector<int>> eval_slice() {
    const auto& d = real().docs;
    return {d.begin(), d.begin() + std::min<std::ptrdiff_t>(60, static_cast<std::ptrdiff_t>(d.size()))};
}

CalibData small_calib() {
    return load_calibration("tinystories", data_dir(), real().tok, real().model.config.seq_len, 2048);
}

double nll(const Model& m) { return evaluate(m, eval_slice()).mean_nll(); }

struct Case {
    const char* recipe;
    OutputFormat format;
    const char* out;
};

}  // namespace

TEST_CASE("ptq quantize: every output format's file evaluates as the in-memory quantized model" *
          doctest::skip(!have_data())) {
    const Case cases[] = {
        {"w=int4-sym:g32,algo=rtn", OutputFormat::gguf, "q4_0.gguf"},
        {"w=int8-sym:g32,algo=gptq", OutputFormat::gguf, "q8_0.gguf"},
        {"w=int4-min:g32,algo=rtn", OutputFormat::gguf, "q4_1.gguf"},
        {"w=mxfp4:b32,algo=rtn", OutputFormat::gguf, "mxfp4.gguf"},
        {"w=int8-asym:g32,algo=gptq", OutputFormat::gptq, "gptq8"},
        {"w=int4-sym:g32,algo=awq+gptq", OutputFormat::gptq, "gptq4_awq"},
        {"w=int4-asym:g32,algo=awq+gptq", OutputFormat::awq, "awq4"},
        {"w=int4-asym:pc,algo=rtn", OutputFormat::awq, "awq4_pc"},
        {"w=int8-sym:g32,algo=awq+gptq", OutputFormat::compressed_tensors, "ct8_awq"},
        {"w=int4-asym:g32,algo=gptq,act-order=1", OutputFormat::compressed_tensors, "ct4_actorder"},
        {"w=mxfp4:b32,algo=rtn", OutputFormat::compressed_tensors, "ct_mxfp4"},
        {"w=fp8-e4m3:pc,algo=rtn", OutputFormat::compressed_tensors, "ct_fp8"},
        // Rotated models (norms folded, separate classifier written as output.weight / lm_head.weight).
        {"w=int8-sym:g32,algo=rtn,rot=hadamard", OutputFormat::gguf, "q8_0_rot.gguf"},
        {"w=int4-asym:g32,algo=awq+gptq,rot=random:3", OutputFormat::gptq, "gptq4_rot"},
    };
    TempDir tmp;
    CalibData calib = small_calib();
    const double fp32 = nll(real().model);
    for (const Case& c : cases) {
        const std::string recipe = c.recipe, name = c.out;
        CAPTURE(recipe);
        CAPTURE(name);
        const RecipeSpec r = resolve_for_output(parse_recipe(c.recipe), c.format);
        QuantizeOptions o;
        o.output = c.format;
        const QuantizedModel q = quantize_model(real().model, r, r.needs_calibration() ? &calib : nullptr, o);
        const fs::path out = tmp.path / c.out;
        write_quantized(q, c.format, out, &real().tok, "stories260K");
        const InputModel back = load_model_file(out, std::nullopt);
        std::size_t stored = 0;
        for (const auto& e : q.linears) stored += !e.dense;
        CHECK(stored > 0);  // at least one linear is in the format's layout
        const double mem = nll(q.model), file = nll(back.model);
        MESSAGE(name << ": in-memory " << mem << ", file " << file << ", fp32 " << fp32 << ", " << stored << "/"
                     << q.linears.size() << " linears in the layout");
        CHECK(std::abs(file - mem) <= 1e-5 * std::abs(mem));
        CHECK(std::abs(mem - fp32) > 1e-5);  // the file is quantized, not the fp32 model
        CHECK(mem - fp32 < 0.5);             // and still a working model
    }
}

namespace stream_test {
/// Every file under `p` (a file or a folder) with its bytes, by relative name.
std::map<std::string, std::vector<char>> output_bytes(const fs::path& p) {
    std::map<std::string, std::vector<char>> out;
    if (!fs::is_directory(p)) out[""] = read_bytes(p);
    else
        for (const auto& e : fs::directory_iterator(p)) out[e.path().filename().string()] = read_bytes(e.path());
    return out;
}
bool no_linear_weights(const Model& m) {
    for (const Layer& L : m.layers)
        for (std::string_view n : kLinearNames)
            if (L.linear(n).size() != 0) return false;
    return true;
}
}  // namespace stream_test

TEST_CASE("ptq quantize streams layer by layer: the file equals the in-memory path's, byte for byte" *
          doctest::skip(!have_data())) {
    using namespace stream_test;
    TempDir tmp;
    save_gguf(real().model, real().tok, tmp.path / "m.gguf");
    save_hf(real().model, tmp.path / "hf");
    struct StreamCase {
        const char* input;
        const char* recipe;
        OutputFormat format;
        int reads_per_layer;  // 2 when the fp32 inputs are captured first (seq=0, gptaq=1)
    };
    const StreamCase cases[] = {
        {"m.gguf", "w=int4-sym:g32,algo=rtn", OutputFormat::gguf, 1},
        {"m.gguf", "w=int4-sym:g32,algo=gptq", OutputFormat::gguf, 1},
        {"hf", "w=int4-asym:g32,algo=rtn", OutputFormat::gptq, 1},
        {"hf", "w=int4-asym:g32,algo=gptq,act-order=1", OutputFormat::gptq, 1},
        {"hf", "w=int4-asym:g32,algo=awq+gptq", OutputFormat::awq, 1},
        {"hf", "w=int4-sym:g32,algo=gptq,gptaq=1", OutputFormat::compressed_tensors, 2},
        {"m.gguf", "w=int8-sym:g32,algo=gptq,seq=0,rot=hadamard", OutputFormat::gguf, 2},
    };
    for (const StreamCase& c : cases) {
        const std::string recipe = c.recipe, input = c.input;
        CAPTURE(input);
        CAPTURE(recipe);
        const RecipeSpec r = resolve_for_output(parse_recipe(c.recipe), c.format);
        const bool gguf = c.format == OutputFormat::gguf;
        const fs::path mem_out = tmp.path / (gguf ? "mem.gguf" : "mem"),
                       stream_out = tmp.path / (gguf ? "s.gguf" : "s");
        fs::remove_all(mem_out);
        fs::remove_all(stream_out);
        // In memory: the whole model read, quantized, then written.
        CalibData calib = small_calib();
        QuantizeOptions o;
        o.output = c.format;
        const QuantizedModel q =
            quantize_model(load_model_file(tmp.path / c.input, tokenizer_path()).model, r, &calib, o);
        write_quantized(q, c.format, mem_out, &real().tok, "stories260K");
        // Streamed: the linears stay in the file until their layer is quantized.
        InputModel in = load_model_file(tmp.path / c.input, tokenizer_path(), /*lazy=*/true);
        REQUIRE(in.load_layer);
        CHECK(no_linear_weights(in.model));
        std::vector<int> reads(in.model.layers.size());
        in.load_layer = [&reads, read = in.load_layer](int l, Layer& L) {
            ++reads.at(static_cast<std::size_t>(l));
            read(l, L);
        };
        CalibData calib2 = small_calib();
        std::uintmax_t bytes = 0;
        const QuantizedModel s =
            quantize_to_file(std::move(in), r, &calib2, QuantizeOptions{}, c.format, stream_out, "stories260K", &bytes);
        CHECK(output_bytes(stream_out) == output_bytes(mem_out));
        CHECK(bytes > 0);
        for (int n : reads) CHECK(n == c.reads_per_layer);
        CHECK(no_linear_weights(s.model));  // each layer released once written
        CHECK(s.report.effective_bits == q.report.effective_bits);
        REQUIRE(s.linears.size() == q.linears.size());
        for (std::size_t i = 0; i < s.linears.size(); ++i) {
            CHECK(s.linears[i].dense == q.linears[i].dense);
            CHECK(s.linears[i].ggml_data.empty());
            CHECK(s.linears[i].tensors.empty());
        }
    }
    // keep_layers: the streamed model is the in-memory one, weight for weight.
    const RecipeSpec r = resolve_for_output(parse_recipe("w=int4-sym:g32,algo=gptq"), OutputFormat::gguf);
    CalibData calib = small_calib();
    QuantizeOptions o;
    o.output = OutputFormat::gguf;
    const QuantizedModel q = quantize_model(real().model, r, &calib, o);
    o.keep_layers = true;
    CalibData calib2 = small_calib();
    const QuantizedModel s = quantize_to_file(load_model_file(tmp.path / "m.gguf", tokenizer_path(), true), r, &calib2,
                                              o, OutputFormat::gguf, tmp.path / "k.gguf", "m");
    for (std::size_t l = 0; l < q.model.layers.size(); ++l)
        for (std::string_view n : kLinearNames) CHECK(s.model.layers[l].linear(n) == q.model.layers[l].linear(n));
    // An error mid-stream (a layer that cannot be read) leaves no output and no temporary file.
    for (const OutputFormat f : {OutputFormat::gguf, OutputFormat::gptq}) {
        const fs::path dir = tmp.path / "fail";
        fs::create_directories(dir);
        InputModel in = load_model_file(tmp.path / "hf", tokenizer_path(), true);
        in.load_layer = [read = in.load_layer](int l, Layer& L) {
            if (l == 3) throw ptq::file_error("hf/model.safetensors", "tensor 'x'", "unreadable");
            read(l, L);
        };
        const RecipeSpec rf = resolve_for_output(parse_recipe("w=int4-sym:g32,algo=rtn"), f);
        CHECK_THROWS_WITH_AS(quantize_to_file(std::move(in), rf, nullptr, QuantizeOptions{}, f, dir / "out", "m"),
                             doctest::Contains("unreadable"), ptq::file_error);
        CHECK(fs::is_empty(dir));
        fs::remove_all(dir);
    }
    // A Hugging Face output onto a non-empty folder is refused before anything is read.
    fs::create_directories(tmp.path / "full");
    write_bytes(tmp.path / "full" / "keep.txt", {'x'});
    InputModel in = load_model_file(tmp.path / "hf", tokenizer_path(), true);
    int reads = 0;
    in.load_layer = [&reads](int, Layer&) { ++reads; };
    CHECK_THROWS_WITH_AS(quantize_to_file(std::move(in),
                                          resolve_for_output(parse_recipe("w=int4-sym:g32"), OutputFormat::gptq),
                                          nullptr, QuantizeOptions{}, OutputFormat::gptq, tmp.path / "full", "m"),
                         doctest::Contains("not an empty directory"), ptq::file_error);
    CHECK(reads == 0);
    CHECK(read_bytes(tmp.path / "full" / "keep.txt") == std::vector<char>{'x'});
}

TEST_CASE("ptq: GGUF and HF inputs made by the converters give the llama2.c input's NLL" *
          doctest::skip(!have_data())) {
    TempDir tmp;
    save_gguf(real().model, real().tok, tmp.path / "m.gguf");
    save_hf(real().model, tmp.path / "hf");
    const InputModel l2c = load_model_file(model_path(), tokenizer_path());
    const InputModel gg = load_model_file(tmp.path / "m.gguf", std::nullopt);
    const InputModel hf = load_model_file(tmp.path / "hf", tokenizer_path());
    REQUIRE(gg.tokenizer);
    CHECK(gg.tokenizer->encode("Once upon a time", true) == l2c.tokenizer->encode("Once upon a time", true));
    const double a = nll(l2c.model);
    CHECK(nll(gg.model) == a);
    CHECK(nll(hf.model) == a);
    // The same recipe from each input gives the same quantized model.
    const RecipeSpec r = parse_recipe("w=int4-asym:g32,algo=rtn");
    QuantizeOptions o;
    const double q0 = nll(quantize_model(l2c.model, r, nullptr, o).model);
    CHECK(nll(quantize_model(gg.model, r, nullptr, o).model) == q0);
    CHECK(nll(quantize_model(hf.model, r, nullptr, o).model) == q0);
}

TEST_CASE("ptq: a rotated fp32 model written by every converter reads back with the same NLL" *
          doctest::skip(!have_data())) {
    TempDir tmp;
    const double orig = nll(real().model);
    Model m = real().model;
    REQUIRE(m.config.shared_classifier);
    rotate_model(m, make_rotation(m.config, RotationKind::hadamard, 11, false));
    const double rotated = nll(m);
    CHECK(std::abs(rotated - orig) <= 1e-4);
    save_checkpoint(m, tmp.path / "rot.bin");
    save_gguf(m, real().tok, tmp.path / "rot.gguf");
    save_hf(m, tmp.path / "rot_hf");
    for (const char* f : {"rot.bin", "rot.gguf", "rot_hf"}) {
        CAPTURE(f);
        const InputModel back = load_model_file(tmp.path / f, tokenizer_path());
        CHECK_FALSE(back.model.config.shared_classifier);  // the folded classifier is stored on its own
        CHECK(back.model.classifier == m.classifier);
        CHECK(back.model.rms_final == Vector::Ones(m.config.dim));
        CHECK(nll(back.model) == rotated);
    }
    // An online rotation cannot be written: every writer refuses and creates nothing.
    Model online = real().model;
    rotate_model(online, make_rotation(online.config, RotationKind::hadamard, 11, true));
    CHECK_THROWS_WITH_AS(save_checkpoint(online, tmp.path / "x.bin"), doctest::Contains("rot-online"),
                         ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(save_gguf(online, real().tok, tmp.path / "x.gguf"), doctest::Contains("online rotation"),
                         ptq::invalid_argument);
    CHECK_THROWS_AS(save_hf(online, tmp.path / "x_hf"), ptq::invalid_argument);
    CHECK_FALSE(fs::exists(tmp.path / "x.bin"));
    CHECK_FALSE(fs::exists(tmp.path / "x.gguf"));
    CHECK_FALSE(fs::exists(tmp.path / "x_hf"));
    // Nor can quantize_model encode it for a file (the recipe check comes first in the command).
    const RecipeSpec r = parse_recipe("w=int4-sym:g32,rot=hadamard,rot-online=1");
    CHECK_THROWS_WITH_AS(resolve_for_output(r, OutputFormat::gguf), doctest::Contains("rot-online=1"), RecipeError);
    QuantizeOptions o;
    o.output = OutputFormat::gptq;
    CHECK_THROWS_WITH_AS(quantize_model(real().model, r, nullptr, o), doctest::Contains("rot-online=1"), RecipeError);
    QuantizedModel q = quantize_model(real().model, r, nullptr, QuantizeOptions{});  // in memory: fine
    CHECK(q.model.w2_input_rotation.rows() == 172);
    CHECK_THROWS_AS(write_quantized(q, OutputFormat::gptq, tmp.path / "q_gptq", &real().tok, "m"),
                    ptq::invalid_argument);
    CHECK_FALSE(fs::exists(tmp.path / "q_gptq"));
}

TEST_CASE("recipe options: every key parses, unknown keys list the accepted ones, formats are checked") {
    const RecipeSpec r = parse_recipe(
        "w=int4-asym:g32,algo=awq+gptq,act-order=1,static-groups=1,damp=0.05,block=64,clip=cs-asym,clip-grid=50,"
        "clip-shrink=0.8,clip-norm=2.4,awq-grid=10,awq-duo=1,awq-clip=0,sq-alpha=0.7,scale=bf16,calib-tokens=4096,"
        "seq=0");
    CHECK(r.act_order);
    CHECK(r.static_groups);
    CHECK(r.damp == 0.05);
    CHECK(r.block == 64);
    CHECK(r.clip == ClipKind::cs_asym);
    CHECK(r.clip_grid == 50);
    CHECK(r.awq_grid == 10);
    CHECK(r.awq_duo);
    CHECK_FALSE(r.awq_clip);
    CHECK(r.scale == std::optional<std::string>("bf16"));
    CHECK(r.calib_tokens == std::optional<std::size_t>(4096));
    CHECK(parse_recipe(r.text()).text() == r.text());
    auto msg = [](auto&& f) {
        try {
            f();
        } catch (const RecipeError& e) {
            return std::string(e.what());
        }
        return std::string("(accepted)");
    };
    const std::string unknown = msg([] { parse_recipe("w=int4-sym,foo=1"); });
    CHECK(unknown.find("unknown key 'foo'") != std::string::npos);
    CHECK(unknown.find("act-order") != std::string::npos);  // lists the accepted keys
    CHECK(msg([] { parse_recipe("damp=-1"); }).find("damp must be a number") != std::string::npos);
    CHECK(msg([] { parse_recipe("w=int4-sym,clip=cs-asym"); }).find("asymmetric") != std::string::npos);
    CHECK(msg([] {
              resolve_for_output(parse_recipe("w=int3-asym:g32"), OutputFormat::gguf);
          }).find("cannot be written as gguf") != std::string::npos);
    CHECK(msg([] {
              resolve_for_output(parse_recipe("w=int4-sym:g32,algo=gptq,act-order=1"), OutputFormat::gguf);
          }).find("act-order=1") != std::string::npos);
    CHECK(msg([] { resolve_for_output(parse_recipe("w=int8-sym:g32"), OutputFormat::awq); }).find("awq holds") !=
          std::string::npos);
    CHECK(msg([] { resolve_for_output(parse_recipe("w=int4-sym:g32,a=int8"), OutputFormat::gptq); }).find("a=int8") !=
          std::string::npos);
    CHECK(msg([] {
              resolve_for_output(parse_recipe("w=int4-sym:g32,scale=f32"), OutputFormat::gptq);
          }).find("scale=f32") != std::string::npos);
    CHECK(resolve_for_output(parse_recipe("w=int4-sym:g32"), OutputFormat::gptq).scale ==
          std::optional<std::string>("f16"));
    // GPTQ's refinement and error-aware calibration.
    const RecipeSpec g = parse_recipe("w=int3-asym:g32,algo=gptq,refine=4,gptaq=1,gptaq-alpha=0.25");
    CHECK(g.refine == 4);
    CHECK(g.gptaq);
    CHECK(g.gptaq_alpha == 0.25);
    CHECK(parse_recipe(g.text()).text() == g.text());
    CHECK(g.text().find("refine=4,gptaq=1,gptaq-alpha=0.25") != std::string::npos);
    CHECK(msg([] { parse_recipe("w=int3-asym:g32,algo=rtn,refine=2"); }).find("refine needs GPTQ") !=
          std::string::npos);
    CHECK(msg([] { parse_recipe("w=int3-asym:g32,algo=awq,gptaq=1"); }).find("gptaq needs GPTQ") != std::string::npos);
    CHECK(msg([] { parse_recipe("algo=gptq,gptaq=1,seq=0"); }).find("sequential") != std::string::npos);
    CHECK(msg([] { parse_recipe("algo=gptq,gptaq-alpha=2"); }).find("gptaq-alpha must be") != std::string::npos);
    // Presets: the named recipe, with the keys given beside it overriding its values.
    for (const auto& name : preset_names()) {
        CAPTURE(name);
        CHECK(parse_recipe("preset=" + name).text() == parse_recipe(preset_recipe(name)).text());
    }
    const RecipeSpec p = parse_recipe("calib-tokens=4096, preset=w4");
    CHECK(p.weight_text() == parse_recipe(preset_recipe("w4")).weight_text());
    CHECK(p.calib_tokens == std::optional<std::size_t>(4096));
    CHECK(msg([] { parse_recipe("preset=w9"); }).find("unknown preset 'w9'; presets: w4") != std::string::npos);
}

namespace {
struct Run {
    int status;
    std::string output;
};
Run run_cli(const std::string& args, const fs::path& dir) {
    // The ptq command is a separate target (no build-order dependency, so that this file
    // compiles while the tool links): a missing binary fails here with its path.
    REQUIRE_MESSAGE(fs::exists(PTQ_CLI), "the ptq command " PTQ_CLI " is not built (target ptq_cli)");
    const fs::path log = dir / "cli.log";
    const std::string cmd = std::string(PTQ_CLI) + " " + args + " > '" + log.string() + "' 2>&1";
    const int st = std::system(cmd.c_str());
    std::ifstream in(log);
    std::stringstream s;
    s << in.rdbuf();
    return {st, s.str()};
}
}  // namespace

TEST_CASE("ptq command: errors name the file or field, exit non-zero and leave no output" *
          doctest::skip(!have_data())) {
    TempDir tmp;
    const std::string model = "'" + model_path().string() + "'";
    const fs::path out = tmp.path / "out.gguf";
    auto check = [&](const std::string& args, const std::string& expect) {
        CAPTURE(args);
        const Run r = run_cli(args, tmp.path);
        CHECK(r.status != 0);
        CHECK_MESSAGE(r.output.find(expect) != std::string::npos, r.output);
        CHECK_FALSE(fs::exists(out));
        CHECK_FALSE(fs::exists(tmp.path / "outdir"));
    };
    check("quantize " + model + " --recipe 'w=int4-sym:g32,bogus=1' --out '" + out.string() + "'",
          "unknown key 'bogus'");
    check("quantize " + model + " --recipe 'w=int3-asym:g32' --format gguf --out '" + out.string() + "'",
          "cannot be written as gguf");
    check("quantize " + model + " --recipe 'w=int4-sym:g32,algo=gptq,act-order=1' --format gguf --out '" +
              out.string() + "'",
          "act-order=1");
    check("quantize " + model + " --recipe 'w=int4-sym:g32,rot=hadamard,rot-online=1' --out '" + out.string() + "'",
          "rot-online=1");
    check("quantize '" + (tmp.path / "none.bin").string() + "' --out '" + out.string() + "'", "none.bin");
    check("quantize " + model + " --format safetensors --out '" + out.string() + "'", "safetensors");
    // An HF folder of another architecture, one with a tensor missing, one with a wrong shape.
    save_hf(real().model, tmp.path / "hf");
    {
        std::ifstream in(tmp.path / "hf" / "config.json");
        nlohmann::json j = nlohmann::json::parse(in);
        j["architectures"] = {"GPT2LMHeadModel"};
        j["model_type"] = "gpt2";
        fs::create_directories(tmp.path / "gpt2");
        fs::copy_file(tmp.path / "hf" / "model.safetensors", tmp.path / "gpt2" / "model.safetensors");
        std::ofstream(tmp.path / "gpt2" / "config.json") << j.dump();
    }
    check("quantize '" + (tmp.path / "gpt2").string() + "' --out '" + out.string() + "'", "GPT2LMHeadModel");
    {
        const ptq::io::SafetensorsFile f(tmp.path / "hf" / "model.safetensors");
        std::vector<ptq::io::TensorData> keep, reshaped;
        std::vector<std::uint64_t> wrong{7, 64};
        for (const auto& t : f.tensors()) {
            const ptq::io::TensorView v = f.tensor(t);
            if (t.name != "model.layers.1.mlp.up_proj.weight") keep.push_back({t.name, t.dtype, t.shape, v.data});
            reshaped.push_back(
                {t.name, t.dtype, t.name == "model.layers.0.self_attn.o_proj.weight" ? wrong : t.shape,
                 t.name == "model.layers.0.self_attn.o_proj.weight" ? v.data.first(7 * 64 * 4) : v.data});
        }
        fs::create_directories(tmp.path / "missing");
        fs::create_directories(tmp.path / "shape");
        fs::copy_file(tmp.path / "hf" / "config.json", tmp.path / "missing" / "config.json");
        fs::copy_file(tmp.path / "hf" / "config.json", tmp.path / "shape" / "config.json");
        ptq::io::write_safetensors(tmp.path / "missing" / "model.safetensors", keep);
        ptq::io::write_safetensors(tmp.path / "shape" / "model.safetensors", reshaped);
    }
    check("quantize '" + (tmp.path / "missing").string() + "' --out '" + out.string() + "'",
          "model.layers.1.mlp.up_proj.weight");
    check("quantize '" + (tmp.path / "shape").string() + "' --out '" + out.string() + "'", "shape is [7, 64]");
    // A valid command writes the file; eval reads it back.
    const Run ok = run_cli("quantize " + model + " --recipe 'w=int4-sym:g32' --format gptq --out '" +
                               (tmp.path / "good").string() + "'",
                           tmp.path);
    CHECK_MESSAGE(ok.status == 0, ok.output);
    CHECK(fs::exists(tmp.path / "good" / "config.json"));
    const Run ev = run_cli("eval '" + (tmp.path / "good").string() + "' --tokenizer '" + tokenizer_path().string() +
                               "' --text '" + valid_path().string() + "'",
                           tmp.path);
    CHECK_MESSAGE(ev.status == 0, ev.output);
    CHECK(ev.output.find("mean NLL") != std::string::npos);
}

}  // namespace ptq_model_test

namespace ptq_model_test {

TEST_CASE("ptq eval of a quantized GGUF: packed-code products (ptq::gemm) give the dense NLL within 1e-4" *
          doctest::skip(!have_data())) {
    // Bound: each output of a packed product is within r * 2^-24 * sum_i |w^_i x_i| of the
    // dequantize-then-multiply value (kernel::dot_row, r = 2 * (ceil(in / W) + groups) +
    // log2 W + 2, under 60 for this model; Q4_1 relative to |scale * c x| + |min x|), i.e. a
    // relative change of a few 1e-6 per linear; 1e-4 of the mean NLL leaves room for its
    // propagation through 5 layers and the softmax. Dense (--dense) and packed must also differ
    // only by that: the packed path is taken (the counts) and the models are the same file.
    const Case cases[] = {
        {"w=int4-sym:g32,algo=rtn", OutputFormat::gguf, "q4_0.gguf"},
        {"w=int8-sym:g32,algo=rtn", OutputFormat::gguf, "q8_0.gguf"},
        {"w=int4-min:g32,algo=rtn", OutputFormat::gguf, "q4_1.gguf"},
        {"w=mxfp4:b32,algo=rtn", OutputFormat::gguf, "mxfp4.gguf"},
    };
    TempDir tmp;
    for (const Case& c : cases) {
        const std::string name = c.out;
        CAPTURE(name);
        const RecipeSpec r = resolve_for_output(parse_recipe(c.recipe), c.format);
        QuantizeOptions o;
        o.output = c.format;
        const QuantizedModel q = quantize_model(real().model, r, nullptr, o);
        const fs::path out = tmp.path / c.out;
        write_quantized(q, c.format, out, &real().tok, "stories260K");
        InputModel in = load_model_file(out, std::nullopt);
        const double dense = nll(in.model);
        int stored = 0;
        for (const auto& e : q.linears) stored += !e.dense;
        REQUIRE(use_packed_linears(in.model, out) == stored);
        REQUIRE(stored > 0);
        const double packed = nll(in.model);
        MESSAGE(name << ": dense " << dense << ", packed " << packed << " (" << stored << " packed linears)");
        CHECK(std::abs(packed - dense) <= 1e-4 * dense);
        CHECK(decode_tokens_per_second(in.model, 1, 0.0) > 0.0);
    }
    // A float GGUF has nothing packed; the llama2.c checkpoint neither.
    save_gguf(real().model, real().tok, tmp.path / "f32.gguf");
    InputModel f32 = load_model_file(tmp.path / "f32.gguf", std::nullopt);
    CHECK(use_packed_linears(f32.model, tmp.path / "f32.gguf") == 0);
    Model l2c = real().model;
    CHECK(use_packed_linears(l2c, model_path()) == 0);
}

}  // namespace ptq_model_test

namespace ptq_model_test {
namespace default_preset_test {

// The first `n` stories of the evaluation text, written as a text file for `ptq ... --text`.
fs::path write_story_prefix(const fs::path& dir, int n) {
    const std::string text = read_text_file(valid_path());
    std::size_t end = 0;
    for (int i = 0; i < n && end != std::string::npos; ++i) {
        end = text.find("<|endoftext|>", end);
        if (end != std::string::npos) end += std::string_view("<|endoftext|>").size();
    }
    const fs::path p = dir / "eval_prefix.txt";
    std::ofstream(p, std::ios::binary) << text.substr(0, end);
    return p;
}

// The number after `label` in the command's output (NaN when absent).
double number_after(const std::string& out, const std::string& label) {
    const auto at = out.find(label);
    if (at == std::string::npos) return std::nan("");
    return std::strtod(out.c_str() + at + label.size(), nullptr);
}

}  // namespace default_preset_test

TEST_CASE("ptq quantize: the default recipe is a preset every output format holds") {
    for (OutputFormat f :
         {OutputFormat::gguf, OutputFormat::gptq, OutputFormat::awq, OutputFormat::compressed_tensors}) {
        const std::string name = default_preset(f);
        CAPTURE(name);
        const RecipeSpec r = parse_recipe("preset=" + name);
        CHECK_NOTHROW(resolve_for_output(r, f));
        CHECK(r.reconstruct == ReconstructKind::gptq);
        CHECK(r.weight_text().rfind("int4-", 0) == 0);
        CHECK(r.group == 32);
    }
    // The GPTQ checkpoint's default keeps permuted (act-order) groups, which GGUF and AWQ refuse.
    const RecipeSpec w4 = parse_recipe("preset=" + default_preset(OutputFormat::gptq));
    CHECK(w4.act_order);
    CHECK_FALSE(w4.static_groups);
    CHECK_THROWS_WITH_AS(resolve_for_output(w4, OutputFormat::gguf), doctest::Contains("act-order=1"), RecipeError);
    CHECK_THROWS_WITH_AS(resolve_for_output(w4, OutputFormat::awq), doctest::Contains("act-order=1"), RecipeError);
}

TEST_CASE("ptq quantize without --recipe: the format's preset, its file evaluates as in memory and beats RTN" *
          doctest::skip(!have_data())) {
    using namespace default_preset_test;
    // Bounds between the in-memory NLL (`quantize --eval`) and the file's (`eval`): the command
    // quantizes with the recipe resolved for the format (scale=f16), so the in-memory model
    // already carries the fp16-rounded scales and Q4_1 minima the file stores, and the integer
    // codes and zero points are exact; what remains is the reading path. The GPTQ folder is
    // dequantized to float weights (same weights: 1e-5 relative, as for every format above);
    // the GGUF file is evaluated through its packed codes (ptq::gemm: 1e-4 relative, the packed
    // evaluation bound above). Both NLLs are printed with 6 decimals: 1e-6 more.
    struct Target {
        const char* format;
        const char* out;
        const char* rtn;  // RTN with the preset's weight format and groups
        double rel_tol;
    };
    const Target targets[] = {
        {"gguf", "default.gguf", "w=int4-min:g32,algo=rtn", 1e-4},
        {"gptq", "default_gptq", "w=int4-asym:g32,algo=rtn", 1e-5},
    };
    TempDir tmp;
    const fs::path text = write_story_prefix(tmp.path, 40);
    const std::string model = "'" + model_path().string() + "'",
                      tok = " --tokenizer '" + tokenizer_path().string() + "'",
                      eval_text = " --text '" + text.string() + "'";
    const Run fp32 = run_cli("eval " + model + tok + eval_text, tmp.path);
    REQUIRE_MESSAGE(fp32.status == 0, fp32.output);
    const double fp32_nll = number_after(fp32.output, "mean NLL ");
    for (const Target& t : targets) {
        const std::string format = t.format;
        CAPTURE(format);
        const fs::path out = tmp.path / t.out, rtn_out = tmp.path / (std::string("rtn_") + t.out);
        // A small calibration budget keeps the test short; --calib-tokens replaces the preset's.
        const Run q = run_cli("quantize " + model + tok + " --calib-tokens 2048 --format " + format + " --out '" +
                                  out.string() + "' --eval '" + text.string() + "'",
                              tmp.path);
        REQUIRE_MESSAGE(q.status == 0, q.output);
        const OutputFormat fmt = parse_output_format(format).value();
        CHECK_MESSAGE(contains(q.output, "recipe preset=" + default_preset(fmt) + ":"), q.output);
        CHECK_MESSAGE(contains(q.output, "calib-tokens=2048"), q.output);
        CHECK_MESSAGE(contains(q.output, "sequences, 2048 tokens"), q.output);
        const double mem = number_after(q.output, "in-memory mean NLL ");
        const Run e = run_cli("eval '" + out.string() + "'" + tok + eval_text, tmp.path);
        REQUIRE_MESSAGE(e.status == 0, e.output);
        const double file = number_after(e.output, "mean NLL ");
        // The RTN recipe of the same weight format, written and read back the same way.
        const Run qr = run_cli("quantize " + model + tok + " --recipe '" + t.rtn + "' --format " + format + " --out '" +
                                   rtn_out.string() + "'",
                               tmp.path);
        REQUIRE_MESSAGE(qr.status == 0, qr.output);
        const Run er = run_cli("eval '" + rtn_out.string() + "'" + tok + eval_text, tmp.path);
        REQUIRE_MESSAGE(er.status == 0, er.output);
        const double rtn = number_after(er.output, "mean NLL ");
        MESSAGE(format << ": fp32 " << fp32_nll << ", preset in memory " << mem << ", file " << file << ", RTN file "
                       << rtn);
        REQUIRE(std::isfinite(mem));
        REQUIRE(std::isfinite(file));
        REQUIRE(std::isfinite(rtn));
        CHECK(std::abs(file - mem) <= t.rel_tol * mem + 1e-6);
        CHECK(file < rtn);
        CHECK(file > fp32_nll);  // the file is quantized
    }
}

}  // namespace ptq_model_test
