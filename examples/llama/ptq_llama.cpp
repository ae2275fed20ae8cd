// ptq_llama — weight-quantization recipes on a real Llama-architecture model.
//
// Loads a llama2.c checkpoint + tokenizer (default: ../shared/data/stories260K), evaluates
// each recipe on an evaluation text (default: tinystories/valid.txt, protocol of DESIGN.md §8:
// stories split on <|endoftext|> lines, BOS + dummy prefix, truncated to seq_len, mean
// next-token NLL) and prints a table. A recipe is a function that rewrites the seven linear
// weights of a copy of the fp32 model; embedding and classifier stay fp32.
//
//   ptq_llama [--data DIR] [--model FILE] [--tokenizer FILE] [--eval FILE]
//             [--recipes name,name,...] [--list]
// llama.hpp first: it includes Eigen under a GCC 12 false-warning guard (see there).
#include "llama/llama.hpp"

#include <ptq/ptq.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using ptq::llama::Model;
using ptq::llama::RowMatrix;

struct Recipe {
  std::string name;
  std::string description;
  /// Rewrites the weights of `m` in place (m starts as a copy of the fp32 model).
  std::function<void(Model& m)> apply;
};

/// Round-to-nearest fake quantization of the seven linears of every layer.
template <class Format, class Granularity>
Recipe rtn_recipe(std::string name, std::string description) {
  return {std::move(name), std::move(description), [](Model& m) {
            m.for_each_linear([](int, std::string_view, RowMatrix& w) {
              w = ptq::fake_quantize<Format>(w, Granularity{});  // default options: half-to-even, widen to 0
            });
          }};
}

std::vector<Recipe> all_recipes() {
  std::vector<Recipe> r;
  r.push_back({"fp32", "unquantized reference", [](Model&) {}});
  r.push_back(rtn_recipe<ptq::IntFormat<4, false>, ptq::PerGroup<32>>(
      "rtn-int4-asym-g32", "RTN, 4-bit asymmetric, groups of 32 along in_features"));
  r.push_back(rtn_recipe<ptq::IntFormat<8, false>, ptq::PerChannel>(
      "rtn-int8-asym-perchannel", "RTN, 8-bit asymmetric, one scale/zero per output row"));
  r.push_back(rtn_recipe<ptq::IntFormat<4, true>, ptq::PerGroup<32>>(
      "rtn-int4-sym-g32", "RTN, 4-bit symmetric, groups of 32"));
  r.push_back(rtn_recipe<ptq::IntFormat<3, false>, ptq::PerGroup<32>>(
      "rtn-int3-asym-g32", "RTN, 3-bit asymmetric, groups of 32"));
  // More recipes (GPTQ, AWQ, SmoothQuant, LQER...) plug in here; those needing calibration
  // statistics can collect them with ptq::llama::evaluate(..., hook) on train_calib.txt.
  return r;
}

void usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " [--data DIR] [--model FILE] [--tokenizer FILE] [--eval FILE] [--recipes a,b,...] [--list]\n"
               "  --data DIR        folder holding stories260K/ and tinystories/ (default " PTQ_DATA_DIR ")\n"
               "  --model FILE      llama2.c checkpoint (default DIR/stories260K/stories260K.bin)\n"
               "  --tokenizer FILE  llama2.c tokenizer.bin (default DIR/stories260K/tok512.bin)\n"
               "  --eval FILE       evaluation text, stories separated by <|endoftext|> lines\n"
               "                    (default DIR/tinystories/valid.txt)\n"
               "  --recipes LIST    comma-separated recipe names (default: all)\n"
               "  --list            print the recipes and exit\n";
}

}  // namespace

int main(int argc, char** argv) {
  fs::path data = PTQ_DATA_DIR, model_file, tok_file, eval_file;
  std::vector<std::string> selected;
  const std::vector<Recipe> recipes = all_recipes();
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
    else if (a == "--eval") eval_file = value();
    else if (a == "--recipes") {
      std::stringstream ss(value());
      for (std::string s; std::getline(ss, s, ',');)
        if (!s.empty()) selected.push_back(s);
    } else if (a == "--list") {
      for (const auto& r : recipes) std::printf("%-26s %s\n", r.name.c_str(), r.description.c_str());
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(argv[0]);
      return 0;
    } else {
      std::cerr << "unknown argument: " << a << "\n";
      usage(argv[0]);
      return 2;
    }
  }
  if (model_file.empty()) model_file = data / "stories260K" / "stories260K.bin";
  if (tok_file.empty()) tok_file = data / "stories260K" / "tok512.bin";
  if (eval_file.empty()) eval_file = data / "tinystories" / "valid.txt";

  std::vector<const Recipe*> run;
  if (selected.empty()) {
    for (const auto& r : recipes) run.push_back(&r);
  } else {
    for (const auto& name : selected) {
      const Recipe* found = nullptr;
      for (const auto& r : recipes)
        if (r.name == name) found = &r;
      if (!found) {
        std::cerr << "unknown recipe '" << name << "' (see --list)\n";
        return 2;
      }
      run.push_back(found);
    }
  }

  try {
    using clock = std::chrono::steady_clock;
    const Model fp32 = ptq::llama::load_checkpoint(model_file);
    const auto& c = fp32.config;
    const auto tok = ptq::llama::Tokenizer::load(tok_file, c.vocab_size);
    const auto stories = ptq::llama::split_stories(ptq::llama::read_text_file(eval_file));
    const auto docs = ptq::llama::encode_stories(tok, stories, c.seq_len);
    std::size_t predicted = 0;
    for (const auto& d : docs) predicted += d.size() > 0 ? d.size() - 1 : 0;
    std::fprintf(stderr,
                 "model %s: dim %d, hidden %d, layers %d, heads %d/%d kv, vocab %d%s, seq_len %d\n"
                 "eval  %s: %zu stories, %zu predicted tokens\n",
                 model_file.string().c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                 c.shared_classifier ? " (shared classifier)" : " (separate classifier)", c.seq_len,
                 eval_file.string().c_str(), docs.size(), predicted);

    struct Row {
      std::string name;
      double nll, ppl, quant_s, eval_s;
    };
    std::vector<Row> rows;
    double fp32_nll = 0.0;
    bool have_fp32 = false;
    for (const Recipe* r : run) {
      Model m = fp32;
      const auto t0 = clock::now();
      r->apply(m);
      const auto t1 = clock::now();
      std::size_t last_pct = 101;
      const auto res = ptq::llama::evaluate(m, docs, {}, [&](std::size_t done, std::size_t total) {
        const std::size_t pct = 100 * done / total;
        if (pct / 10 != last_pct / 10 || done == total) {
          std::fprintf(stderr, "\r[%s] evaluating %3zu%% (%zu/%zu)", r->name.c_str(), pct, done, total);
          last_pct = pct;
        }
      });
      const auto t2 = clock::now();
      std::fprintf(stderr, "\n");
      rows.push_back({r->name, res.mean_nll(), res.perplexity(), std::chrono::duration<double>(t1 - t0).count(),
                      std::chrono::duration<double>(t2 - t1).count()});
      if (r->name == "fp32") {
        fp32_nll = res.mean_nll();
        have_fp32 = true;
      }
    }

    std::printf("%-26s %10s %10s %10s %9s %9s\n", "recipe", "mean NLL", "ppl", "dNLL", "quant s", "eval s");
    for (const Row& r : rows) {
      char delta[32] = "n/a";
      if (have_fp32) std::snprintf(delta, sizeof delta, "%+.4f", r.nll - fp32_nll);
      std::printf("%-26s %10.4f %10.4f %10s %9.2f %9.2f\n", r.name.c_str(), r.nll, r.ppl, delta, r.quant_s, r.eval_s);
    }
  } catch (const std::exception& e) {
    std::cerr << "ptq_llama: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
