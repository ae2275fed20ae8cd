// ptq_convert — the harness's Llama model between llama2.c, GGUF and Hugging Face files, with
// the mean NLL of what is written, so that a consumer (llama.cpp's llama-perplexity,
// transformers) can be checked against ptq's own figure.
//
//   ptq_convert [--data DIR] [--model FILE.bin --tokenizer FILE.bin | --from-gguf FILE | --from-hf DIR]
//               [--gguf OUT.gguf] [--hf OUT_DIR] [--llama2c OUT.bin]
//               [--quant q8_0|q4_0|q4_1|mxfp4] [--eval] [--eval-chunked [N_CTX]] [--text FILE]
//
// Input: a llama2.c checkpoint + tokenizer (default: DIR/stories260K), a GGUF file (its own
// vocabulary) or a Hugging Face folder (tokenizer from --tokenizer). Outputs: any of the three.
// --eval prints the mean next-token NLL of the docs/DESIGN.md §16 protocol (stories split on
// <|endoftext|>, each with BOS, truncated to seq_len); --eval-chunked prints the quantity
// llama-perplexity computes (whole text, chunks of N_CTX = 512 tokens, second half scored).
// --quant first quantizes the seven linears of every layer with RTN into that ggml block type
// (gguf_quantize.hpp): the evaluations and every output then use the quantized weights, and
// --gguf stores them as ggml blocks (others as F32 values).
#include "llama/llama.hpp"
#include "llama/chunked_eval.hpp"
#include "llama/gguf_model.hpp"
#include "llama/gguf_quantize.hpp"
#include "llama/hf_model.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

namespace {

namespace fs = std::filesystem;
using namespace ptq::llama;

void usage(const char* argv0) {
    std::cerr << "usage: " << argv0
              << " [options]\n"
                 "input (one of; default the llama2.c files under --data):\n"
                 "  --data DIR           folder holding stories260K/ and tinystories/ (default " PTQ_DATA_DIR
                 ", or $PTQ_DATA_DIR)\n"
                 "  --model FILE         llama2.c checkpoint (default DIR/stories260K/stories260K.bin)\n"
                 "  --tokenizer FILE     llama2.c tokenizer.bin (default DIR/stories260K/tok512.bin); also the\n"
                 "                       tokenizer of --from-hf\n"
                 "  --from-gguf FILE     a GGUF file (model and vocabulary)\n"
                 "  --from-hf DIR        a Hugging Face folder (config.json + model.safetensors)\n"
                 "outputs (any of):\n"
                 "  --gguf FILE          GGUF v3, F32 tensors, llama metadata and vocabulary\n"
                 "  --hf DIR             model.safetensors (F32, q/k rows in rotate-half order) + config.json\n"
                 "  --llama2c FILE       llama2.c legacy checkpoint\n"
                 "  --quant TYPE         RTN of the linears (groups of 32, fp16 scales) to q8_0, q4_0, q4_1 or mxfp4\n"
                 "                       before evaluating and writing (GGUF: ggml blocks; a row length that is\n"
                 "                       not a multiple of 32 is written as F32 values)\n"
                 "evaluation:\n"
                 "  --eval               mean NLL, docs/DESIGN.md §16 protocol (per story, BOS, seq_len)\n"
                 "  --eval-chunked [N]   llama-perplexity's protocol: whole text, chunks of N tokens (512)\n"
                 "  --text FILE          evaluation text (default DIR/tinystories/valid.txt)\n";
}

}  // namespace

int main(int argc, char** argv) {
    fs::path data = PTQ_DATA_DIR, model_file, tok_file, gguf_in, hf_in, gguf_out, hf_out, llama2c_out, text_file;
    if (const char* env = std::getenv("PTQ_DATA_DIR"); env && *env) data = env;
    bool eval = false;
    std::optional<GgufQuantType> quant;
    std::optional<int> chunked;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "missing value after " << a << "\n";
                usage(argv[0]);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--data") data = value();
        else if (a == "--model") model_file = value();
        else if (a == "--tokenizer") tok_file = value();
        else if (a == "--from-gguf") gguf_in = value();
        else if (a == "--from-hf") hf_in = value();
        else if (a == "--gguf") gguf_out = value();
        else if (a == "--hf") hf_out = value();
        else if (a == "--llama2c") llama2c_out = value();
        else if (a == "--eval") eval = true;
        else if (a == "--quant") {
            const std::string v = value();
            quant = parse_gguf_quant_type(v);
            if (!quant) {
                std::cerr << "--quant: unknown type '" << v << "' (q8_0, q4_0, q4_1, mxfp4)\n";
                return 2;
            }
        } else if (a == "--eval-chunked") {
            chunked = 512;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                const std::string v = value();
                char* end = nullptr;
                const long n = std::strtol(v.c_str(), &end, 10);
                if (v.empty() || *end || n < 2 || n > 1 << 20) {
                    std::cerr << "--eval-chunked needs a context length >= 2, not '" << v << "'\n";
                    return 2;
                }
                chunked = static_cast<int>(n);
            }
        } else if (a == "--text") text_file = value();
        else if (a == "-h" || a == "--help") {
            usage(argv[0]);
            return 0;
        } else {
            std::cerr << "unknown argument: " << a << "\n";
            usage(argv[0]);
            return 2;
        }
    }
    if (!gguf_in.empty() && !hf_in.empty()) {
        std::cerr << "--from-gguf and --from-hf exclude each other\n";
        return 2;
    }
    if (model_file.empty()) model_file = data / "stories260K" / "stories260K.bin";
    if (tok_file.empty()) tok_file = data / "stories260K" / "tok512.bin";
    if (text_file.empty()) text_file = data / "tinystories" / "valid.txt";

    try {
        Model model;
        Tokenizer tok;
        std::string name;
        if (!gguf_in.empty()) {
            LoadedModel lm = load_gguf(gguf_in);
            model = std::move(lm.model);
            tok = std::move(lm.tokenizer);
            name = gguf_in.stem().string();
            std::printf("read GGUF %s\n", gguf_in.c_str());
        } else if (!hf_in.empty()) {
            model = load_hf(hf_in);
            tok = Tokenizer::load(tok_file, model.config.vocab_size);
            name = hf_in.filename().string();
            std::printf("read HF folder %s (tokenizer %s)\n", hf_in.c_str(), tok_file.c_str());
        } else {
            model = load_checkpoint(model_file);
            tok = Tokenizer::load(tok_file, model.config.vocab_size);
            name = model_file.stem().string();
            std::printf("read llama2.c %s (tokenizer %s)\n", model_file.c_str(), tok_file.c_str());
        }
        const Config& c = model.config;
        std::printf("  dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq_len %d, %s classifier\n", c.dim,
                    c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                    c.shared_classifier ? "shared" : "separate");

        std::optional<GgufQuantizedModel> quantized;
        if (quant) {
            quantized = quantize_for_gguf(model, *quant);
            model = quantized->model;
            std::printf("quantized the linears with RTN to %s (general.file_type %u)\n", gguf_quant_type_name(*quant),
                        quantized->file_type);
        }
        if (!gguf_out.empty()) {
            GgufWriteOptions o;
            if (quantized) o = quantized->write_options(name);
            o.name = name;
            save_gguf(model, tok, gguf_out, o);
            std::printf("wrote GGUF %s\n", gguf_out.c_str());
        }
        if (!hf_out.empty()) {
            save_hf(model, hf_out);
            std::printf("wrote HF folder %s\n", hf_out.c_str());
        }
        if (!llama2c_out.empty()) {
            save_checkpoint(model, llama2c_out);
            std::printf("wrote llama2.c %s\n", llama2c_out.c_str());
        }

        if (eval || chunked) {
            const std::string text = read_text_file(text_file);
            if (eval) {
                const auto docs = encode_stories(tok, split_stories(text), c.seq_len);
                const EvalResult r = evaluate(model, docs);
                std::printf("per-story NLL (%s): %zu stories, %zu predicted tokens, mean NLL %.6f, ppl %.4f\n",
                            text_file.c_str(), r.sequences, r.predicted_tokens, r.mean_nll(), r.perplexity());
            }
            if (chunked) {
                const std::vector<int> tokens = encode_whole_text(tok, text);
                const ChunkedEvalResult r = evaluate_chunked(model, tokens, *chunked);
                std::printf(
                    "chunked NLL, llama-perplexity protocol (%s): %zu tokens, %zu chunks of %d, %zu scored, "
                    "mean NLL %.6f, PPL %.4f\n",
                    text_file.c_str(), r.tokens, r.chunks, r.n_ctx, r.result.predicted_tokens, r.result.mean_nll(),
                    r.result.perplexity());
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "ptq_convert: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
