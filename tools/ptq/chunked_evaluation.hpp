// ptq::llama::evaluate_chunked — the perplexity protocol of llama.cpp's `llama-perplexity`
// (tools/perplexity/perplexity.cpp, function `perplexity`, default options), computed with the
// harness's forward pass, so that a figure printed by llama.cpp for a GGUF file can be compared
// like with like with the same weights run by ptq.
//
// That protocol differs from the harness's own (docs/DESIGN.md §16, `evaluate` in evaluation.hpp):
//   * the whole file is tokenized as one text (BOS first, the dummy-prefix space once, the
//     "<|endoftext|>" separator lines tokenized as ordinary text), not story by story;
//   * the tokens are cut into n_chunk = floor(n_tokens / n_ctx) consecutive chunks of n_ctx
//     tokens (the remainder is dropped); the first token of every chunk is replaced by BOS;
//   * each chunk is run from position 0, and only the second half is scored: the logits at
//     positions first = n_ctx/2 .. n_ctx-2 predict tokens first+1 .. n_ctx-1, i.e.
//     n_ctx - 1 - n_ctx/2 predictions per chunk;
//   * llama-perplexity prints exp(mean NLL) as "Final estimate: PPL = ...".
// llama.cpp's log-softmax takes the row max in float, sums expf(l - max) in double and takes
// log in double; sequence scoring here uses the same formula.
#pragma once

#include "evaluation.hpp"
#include "forward.hpp"
#include "tokenizer.hpp"

#include <ptq/parallel.hpp>

#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

/// Result of the chunked protocol: `chunks` chunks of n_ctx tokens, `result.predicted_tokens`
/// scored tokens, `result.nll_sum` their summed NLL (perplexity = result.perplexity()).
struct ChunkedEvalResult {
    std::size_t tokens = 0;  ///< tokens of the whole text (BOS included)
    std::size_t chunks = 0;
    int n_ctx = 0;
    EvalResult result;
};

/// The tokens llama-perplexity evaluates: the whole `text` encoded once with BOS.
inline std::vector<int> encode_whole_text(const Tokenizer& tok, std::string_view text) {
    return tok.encode(text, /*bos=*/true);
}

/// llama-perplexity's protocol on already encoded `tokens` (see the file comment). n_ctx
/// defaults to llama-perplexity's default, 512; it must be in [2, seq_len]. Throws
/// std::invalid_argument when there are fewer than 2 * n_ctx tokens (llama-perplexity refuses
/// such input too).
inline ChunkedEvalResult evaluate_chunked(const Model& m, std::span<const int> tokens, int n_ctx = 512) {
    if (n_ctx < 2 || n_ctx > m.config.seq_len)
        throw std::invalid_argument("ptq::llama::evaluate_chunked: n_ctx = " + std::to_string(n_ctx) +
                                    " outside [2, seq_len = " + std::to_string(m.config.seq_len) + "]");
    if (tokens.size() < 2 * static_cast<std::size_t>(n_ctx))
        throw std::invalid_argument("ptq::llama::evaluate_chunked: " + std::to_string(tokens.size()) +
                                    " tokens, at least 2 * n_ctx = " + std::to_string(2 * n_ctx) + " needed");
    ChunkedEvalResult r;
    r.tokens = tokens.size();
    r.n_ctx = n_ctx;
    r.chunks = tokens.size() / static_cast<std::size_t>(n_ctx);
    const int first = n_ctx / 2;
    const std::size_t scored = static_cast<std::size_t>(n_ctx - 1 - first);
    // The chunks run on ptq's threads (one task each), every chunk writing its own per-token
    // NLLs; they are then summed in token order, exactly as a serial loop would.
    std::vector<double> nll(r.chunks * scored);
    ptq::detail::parallel_for(r.chunks, [&](std::size_t c) {
        const std::size_t start = c * static_cast<std::size_t>(n_ctx);
        std::vector<int> chunk(tokens.begin() + static_cast<std::ptrdiff_t>(start),
                               tokens.begin() + static_cast<std::ptrdiff_t>(start) + n_ctx);
        chunk[0] = Tokenizer::kBos;
        // Logits of positions 0 .. n_ctx-2 (the last position predicts nothing inside the chunk).
        const RowMatrix logits = forward(m, std::span<const int>(chunk).first(static_cast<std::size_t>(n_ctx) - 1));
        for (int t = first; t < n_ctx - 1; ++t) {
            const auto row = logits.row(t);
            const float mx = row.maxCoeff();
            double sum_exp = 0.0;
            for (Eigen::Index i = 0; i < row.size(); ++i) sum_exp += static_cast<double>(std::exp(row(i) - mx));
            const int next = chunk[static_cast<std::size_t>(t) + 1];
            nll[c * scored + static_cast<std::size_t>(t - first)] =
                -(static_cast<double>(row(next) - mx) - std::log(sum_exp));
        }
    });
    for (const double v : nll) r.result.nll_sum += v;
    r.result.predicted_tokens = nll.size();
    r.result.sequences = r.chunks;
    return r;
}

}  // namespace ptq::llama
