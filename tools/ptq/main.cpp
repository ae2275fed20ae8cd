// ptq — the command-line front end: quantize, eval, inspect, table, convert.
//
//   ptq quantize MODEL [--recipe R] [--tokenizer FILE] [--calib FILE|SET] [--calib-tokens N]
//                [--calib-ids FILE] --out OUT [--format gguf|gptq|awq|compressed-tensors]
//   ptq eval MODEL --text FILE [--tokenizer FILE] [--chunked N] [--dense]
//   ptq inspect FILE
//   ptq table [--set NAME]... [--recipe R]... [--report FILE] ...
//   ptq convert MODEL --out OUT --to gguf|hf|llama2c [--tokenizer FILE]
#include "calibration.hpp"
#include "chunked_evaluation.hpp"
#include "evaluation.hpp"
#include "gguf_model.hpp"
#include "hf_model.hpp"
#include "llama2c_checkpoint.hpp"
#include "model_files.hpp"
#include "progress.hpp"
#include "quantize_model.hpp"
#include "recipe.hpp"
#include "table.hpp"

#include <CLI/CLI.hpp>
#include <ptq/parallel.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

namespace {

namespace fs = std::filesystem;
using namespace ptq::llama;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

/// A (done, total) progress callback drawing a ptq::tool::Progress on stderr (created on the first
/// call, when the total is known).
class ProgressLine {
public:
    explicit ProgressLine(std::string label) : label_(std::move(label)) {}
    void operator()(std::size_t done, std::size_t total) {
        if (!p_) p_.emplace(label_, total);
        if (done > p_->count()) p_->advance(done - p_->count());
        if (done >= total) p_->done();
    }

private:
    std::string label_;
    std::optional<ptq::tool::Progress> p_;
};

std::string data_dir() {
    if (const char* env = std::getenv("PTQ_DATA_DIR"); env && *env) return env;
    return PTQ_DATA_DIR;
}

EvalResult eval_text(const Model& m, const Tokenizer& tok, const fs::path& text) {
    const auto docs = encode_stories(tok, split_stories(read_text_file(text)), m.config.seq_len);
    ProgressLine p("evaluating");
    return evaluate(m, docs, {}, [&](std::size_t d, std::size_t n) { p(d, n); });
}

struct QuantizeArgs {
    std::string model, recipe, tokenizer, calib = "tinystories", calib_ids, out, format = "gguf", eval_text;
    std::size_t calib_tokens = 32768;
    bool calib_tokens_given = false;  ///< --calib-tokens on the command line: overrides a preset's budget
    bool non_sequential = false;
};

int run_quantize(const QuantizeArgs& a) {
    const auto t0 = clock_type::now();
    const auto fmt = parse_output_format(a.format);
    if (!fmt || *fmt == OutputFormat::none)
        throw RecipeError("--format '" + a.format + "' is not gguf, gptq, awq or compressed-tensors");
    // Everything that can be refused is refused before any work. Without --recipe: the best
    // measured preset the format holds.
    const std::string recipe = a.recipe.empty() ? "preset=" + default_preset(*fmt) : a.recipe;
    if (a.recipe.empty())
        std::printf("recipe preset=%s: the best preset --format %s holds (no --recipe given)\n",
                    default_preset(*fmt).c_str(), a.format.c_str());
    RecipeSpec r = parse_recipe(recipe);
    if (recipe.find("calib=") == std::string::npos) r.calib = a.calib;
    if (a.calib_tokens_given && recipe.find("calib-tokens=") == std::string::npos) r.calib_tokens = a.calib_tokens;
    r = resolve_for_output(r, *fmt);
    // Read lazily: the linears stay in the mapped input until their layer is quantized.
    InputModel in = load_model_file(a.model, a.tokenizer.empty() ? std::nullopt : std::optional<fs::path>(a.tokenizer),
                                    /*lazy=*/true);
    const Config c = in.model.config;
    const std::shared_ptr<const Tokenizer> tokenizer = in.tokenizer;
    std::fprintf(stderr, "model %s: dim %d, hidden %d, layers %d, heads %d/%d, vocab %d\n", a.model.c_str(), c.dim,
                 c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size);
    std::optional<CalibData> calib;
    if (r.needs_calibration()) {
        const std::size_t budget = r.calib_tokens ? *r.calib_tokens : a.calib_tokens;
        if (!a.calib_ids.empty()) calib = load_calibration_ids(a.calib_ids, c.vocab_size, c.seq_len, budget);
        else if (!tokenizer)
            throw ptq::invalid_argument("recipe '" + r.text() +
                                        "' needs calibration text but the model has no tokenizer: give --tokenizer "
                                        "FILE or --calib-ids FILE");
        else calib = load_calibration(r.calib, data_dir(), *tokenizer, c.seq_len, budget);
        std::fprintf(stderr, "calibration %s: %zu sequences, %zu tokens\n", calib->name.c_str(), calib->seqs.size(),
                     calib->tokens);
    }
    QuantizeOptions o;
    o.sequential = !a.non_sequential;
    o.keep_layers = !a.eval_text.empty();  // --eval runs the quantized model after writing it
    ProgressLine p("quantizing layers");
    o.progress = [&](int l, int n) { p(static_cast<std::size_t>(l), static_cast<std::size_t>(n)); };
    std::uintmax_t bytes = 0;
    const QuantizedModel q = quantize_to_file(std::move(in), r, calib ? &*calib : nullptr, o, *fmt, a.out,
                                              fs::path(a.model).filename().string(), &bytes);
    std::size_t dense = 0;
    for (const auto& e : q.linears) dense += e.dense;
    std::printf("wrote %s (%s, %ju bytes)\n", a.out.c_str(), output_format_name(*fmt), bytes);
    std::printf("recipe %s\n", r.text().c_str());
    std::printf("%.3f bits/weight over the linears; %zu of %zu linears stored dense (shape refused by the layout)\n",
                q.report.effective_bits, dense, q.linears.size());
    if (!std::isnan(q.report.calib_loss_ratio))
        std::printf("calibration loss ratio (layer-output MSE / RTN's, mean over linears): %.4f\n",
                    q.report.calib_loss_ratio);
    if (!q.report.notes.empty()) std::printf("notes: %s\n", q.report.notes.c_str());
    if (!a.eval_text.empty() && tokenizer) {
        const EvalResult e = eval_text(q.model, *tokenizer, a.eval_text);
        std::printf("in-memory mean NLL %.6f, perplexity %.4f (%zu tokens)\n", e.mean_nll(), e.perplexity(),
                    e.predicted_tokens);
    }
    std::printf("time %.2f s (quantization %.2f s, calibration capture %.2f s)\n", since(t0), q.report.seconds,
                q.report.calib_seconds);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ptq: post-training quantization of Llama-architecture models"};
    app.require_subcommand(1);
    int threads = 0;
    app.add_option("--threads", threads,
                   "worker threads of ptq's algorithms (0: all cores); results do not depend on it")
        ->check(CLI::NonNegativeNumber);

    QuantizeArgs qa;
    auto* quantize = app.add_subcommand("quantize", "quantize a model with a recipe and write it in a file format");
    quantize->add_option("MODEL", qa.model, "llama2.c checkpoint, GGUF file or Hugging Face folder")->required();
    quantize->add_option("--recipe", qa.recipe,
                         "recipe (keys below); default: the best preset the --format holds (" + default_preset_help() +
                             ")");
    quantize->add_option("--tokenizer", qa.tokenizer,
                         "llama2.c tokenizer.bin or SentencePiece tokenizer.model (calibration text)");
    quantize->add_option("--calib", qa.calib, "calibration set: tinystories, wikitext or a text file")
        ->capture_default_str();
    auto* calib_tokens_opt =
        quantize
            ->add_option("--calib-tokens", qa.calib_tokens,
                         "calibration token budget; when given, it also replaces a preset's calib-tokens (a "
                         "calib-tokens= key in --recipe wins)")
            ->capture_default_str()
            ->check(CLI::Range(std::size_t{2}, std::size_t{100'000'000}));
    quantize->add_option("--calib-ids", qa.calib_ids, "pre-tokenized calibration ids (one sequence per line)");
    quantize->add_option("--out", qa.out, "output file (gguf) or folder (gptq, awq, compressed-tensors)")->required();
    quantize->add_option("--format", qa.format, "gguf | gptq | awq | compressed-tensors")->capture_default_str();
    quantize->add_flag("--non-sequential", qa.non_sequential, "calibrate every layer on the fp32 model's inputs");
    quantize->add_option("--eval", qa.eval_text, "also print the in-memory NLL of the quantized model on this text");
    std::string presets;
    for (const auto& name : preset_names()) presets += "  " + name + ": " + preset_recipe(name) + "\n";
    quantize->footer("Recipe keys (key=value, comma-separated):\n" + recipe_help() + "Presets (preset=NAME):\n" +
                     presets);

    std::string eval_model, eval_text_file, eval_tokenizer;
    auto* eval = app.add_subcommand("eval", "mean NLL and perplexity of a model file on a text (docs/DESIGN.md §16)");
    eval->add_option("MODEL", eval_model, "llama2.c checkpoint, GGUF file or Hugging Face folder")->required();
    eval->add_option("--text", eval_text_file, "text, stories separated by <|endoftext|> lines")->required();
    eval->add_option("--tokenizer", eval_tokenizer,
                     "llama2.c tokenizer.bin or SentencePiece tokenizer.model (GGUF files carry their own)");
    int eval_chunked = 0;
    eval->add_option("--chunked", eval_chunked,
                     "also llama-perplexity's protocol: whole text, chunks of N tokens, second halves scored")
        ->check(CLI::Range(2, 1 << 20));
    bool eval_dense = false;
    eval->add_flag("--dense", eval_dense,
                   "multiply by the dequantized float weights, not by a GGUF file's packed codes (ptq::gemm)");

    std::string inspect_path;
    auto* inspect = app.add_subcommand("inspect", "tensors, types, shapes, bits per weight, quantization config");
    inspect->add_option("FILE", inspect_path, "model file or folder")->required();

    TableArgs ta;
    ta.data = data_dir();
    bool list = false, non_seq = false;
    auto* table = app.add_subcommand("table", "recipe sets on the stories260K model: tables and docs/RESULTS.md");
    table->add_option("--data", ta.data, "folder holding stories260K/, tinystories/, wikitext2/")
        ->capture_default_str();
    table->add_option("--model", ta.model, "llama2.c checkpoint (default DATA/stories260K/stories260K.bin)");
    table->add_option("--tokenizer", ta.tokenizer, "tokenizer.bin (default DATA/stories260K/tok512.bin)");
    table->add_option("--eval", ta.eval, "evaluation text (default DATA/tinystories/valid.txt)");
    table->add_option("--recipe", ta.recipes, "a recipe (repeatable; ';' separates several)");
    table->add_option("--set", ta.sets, "a named set: default, bits, mx, lqer, calib, all");
    table->add_option("--calib", ta.calib, "default calibration set")->capture_default_str();
    table->add_option("--calib-tokens", ta.calib_tokens, "calibration token budget")->capture_default_str();
    table->add_flag("--non-sequential", non_seq, "non-sequential calibration");
    table->add_flag("--csv", ta.csv, "CSV tables");
    table->add_flag("--markdown", ta.markdown, "Markdown tables");
    table->add_option("--report", ta.report, "write the Markdown report to FILE");
    table->add_flag("--list", list, "list formats, recipe syntax and sets");
    table->add_flag("--search", ta.search,
                    "greedy search of the best recipe per bit width (w4 w3 w2 w3pc), beside the reference GPTQ");
    table->add_flag("--compare", ta.compare, "the presets beside the reference GPTQ, with verdicts (no search)");
    table->add_option("--search-target", ta.search_targets, "search only this target: w4, w3, w2, w3pc (repeatable)");
    table->add_option("--search-axis", ta.search_axes, "extra search axis KEY=V1|V2|... (repeatable)");
    table->add_option("--search-passes", ta.search_passes, "search passes at most")
        ->capture_default_str()
        ->check(CLI::Range(1, 10));

    std::string conv_model, conv_out, conv_to = "gguf", conv_tokenizer;
    auto* convert = app.add_subcommand("convert", "convert an fp32 model between llama2.c, GGUF and Hugging Face");
    convert->add_option("MODEL", conv_model, "llama2.c checkpoint, GGUF file or Hugging Face folder")->required();
    convert->add_option("--out", conv_out, "output file or folder")->required();
    convert->add_option("--to", conv_to, "gguf | hf | llama2c")
        ->capture_default_str()
        ->check(CLI::IsMember({"gguf", "hf", "llama2c"}));
    convert->add_option("--tokenizer", conv_tokenizer, "llama2.c tokenizer.bin (needed for gguf output)");

    CLI11_PARSE(app, argc, argv);
    ptq::set_num_threads(static_cast<std::size_t>(threads));
    try {
        if (*quantize) {
            qa.calib_tokens_given = calib_tokens_opt->count() > 0;
            return run_quantize(qa);
        }
        if (*eval) {
            const auto t0 = clock_type::now();
            InputModel in = load_model_file(
                eval_model, eval_tokenizer.empty() ? std::nullopt : std::optional<fs::path>(eval_tokenizer));
            if (!in.tokenizer)
                throw ptq::invalid_argument("eval: " + eval_model + " carries no tokenizer; give --tokenizer FILE");
            const int packed = eval_dense ? 0 : use_packed_linears(in.model, eval_model);
            const EvalResult e = eval_text(in.model, *in.tokenizer, eval_text_file);
            std::printf("%s: mean NLL %.6f, perplexity %.4f (%zu stories, %zu predicted tokens, %.2f s)\n",
                        eval_model.c_str(), e.mean_nll(), e.perplexity(), e.sequences, e.predicted_tokens, since(t0));
            const int tok = in.tokenizer->encode("Once", true).back();
            const double tps = decode_tokens_per_second(in.model, tok);
            if (packed > 0) {
                for (Layer& L : in.model.layers)  // the same model with float products: the fp32 model's cost
                    for (LinearExtras& x : L.extras) x.packed.reset();
                std::printf(
                    "linears: %d of %zu through packed codes (ptq::gemm); decode step %.1f tokens/s, "
                    "float weights %.1f tokens/s\n",
                    packed, 7 * in.model.layers.size(), tps, decode_tokens_per_second(in.model, tok));
            } else std::printf("linears: float weights; decode step %.1f tokens/s\n", tps);
            if (eval_chunked) {
                const ChunkedEvalResult ch = evaluate_chunked(
                    in.model, encode_whole_text(*in.tokenizer, read_text_file(eval_text_file)), eval_chunked);
                std::printf("chunked (llama-perplexity): %zu tokens, %zu chunks of %d, mean NLL %.6f, PPL %.4f\n",
                            ch.tokens, ch.chunks, ch.n_ctx, ch.result.mean_nll(), ch.result.perplexity());
            }
            return 0;
        }
        if (*inspect) {
            std::fputs(inspect_file(inspect_path).c_str(), stdout);
            return 0;
        }
        if (*table) {
            if (list) {
                list_recipe_sets();
                return 0;
            }
            ta.sequential = !non_seq;
            return run_table(ta);
        }
        if (*convert) {
            const InputModel in = load_model_file(
                conv_model, conv_tokenizer.empty() ? std::nullopt : std::optional<fs::path>(conv_tokenizer));
            if (conv_to == "gguf") save_gguf(in.model, in.llama2c_tokenizer.get(), conv_out);
            else if (conv_to == "hf") save_hf(in.model, conv_out);
            else save_checkpoint(in.model, conv_out);
            std::printf("wrote %s\n", conv_out.c_str());
            return 0;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ptq: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
