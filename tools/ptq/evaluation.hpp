// The evaluation protocol of docs/DESIGN.md §16: stories split on "<|endoftext|>" lines, each
// encoded with BOS and truncated to seq_len, mean next-token NLL over all predicted tokens.
#pragma once

#include "forward.hpp"
#include "model.hpp"
#include "tokenizer.hpp"

#include <ptq/parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

// ---------------------------------------------------------------------------------------------
// Evaluation protocol (docs/DESIGN.md §16)
// ---------------------------------------------------------------------------------------------

inline std::string read_text_file(const std::filesystem::path& path) {
    const std::uintmax_t size = detail::file_size_or_throw(path, "text file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FormatError("ptq::llama: text file " + detail::quote(path) + ": cannot open");
    std::string s(static_cast<std::size_t>(size), '\0');
    in.read(s.data(), static_cast<std::streamsize>(size));
    if (!in) throw FormatError("ptq::llama: text file " + detail::quote(path) + ": read error");
    return s;
}

/// Splits on lines equal to "<|endoftext|>" (a trailing '\r' is tolerated), strips ASCII
/// whitespace from both ends of every story and drops empty ones.
inline std::vector<std::string> split_stories(std::string_view text, std::string_view separator = "<|endoftext|>") {
    std::vector<std::string> stories;
    auto is_space = [](char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
    };
    auto flush = [&](std::string_view s) {
        std::size_t b = 0, e = s.size();
        while (b < e && is_space(s[b])) ++b;
        while (e > b && is_space(s[e - 1])) --e;
        if (e > b) stories.emplace_back(s.substr(b, e - b));
    };
    std::size_t story_begin = 0, line_begin = 0;
    while (line_begin <= text.size()) {
        std::size_t line_end = text.find('\n', line_begin);
        const bool last = line_end == std::string_view::npos;
        if (last) line_end = text.size();
        std::string_view line = text.substr(line_begin, line_end - line_begin);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line == separator) {
            flush(text.substr(story_begin, line_begin - story_begin));
            story_begin = last ? text.size() : line_end + 1;
        }
        if (last) break;
        line_begin = line_end + 1;
    }
    flush(text.substr(story_begin));
    return stories;
}

/// Encodes each story with BOS (and the dummy prefix) and truncates it to max_tokens tokens.
inline std::vector<std::vector<int>> encode_stories(const Tokenizer& tok, const std::vector<std::string>& stories,
                                                    int max_tokens) {
    std::vector<std::vector<int>> docs;
    docs.reserve(stories.size());
    for (const auto& s : stories) {
        std::vector<int> ids = tok.encode(s, /*bos=*/true);
        if (static_cast<int>(ids.size()) > max_tokens) ids.resize(static_cast<std::size_t>(max_tokens));
        docs.push_back(std::move(ids));
    }
    return docs;
}

struct EvalResult {
    std::size_t sequences = 0;
    std::size_t predicted_tokens = 0;  ///< sum over sequences of (length - 1)
    double nll_sum = 0.0;              ///< natural log
    double mean_nll() const { return predicted_tokens ? nll_sum / static_cast<double>(predicted_tokens) : 0.0; }
    double perplexity() const { return std::exp(mean_nll()); }
};

/// Mean next-token NLL over all sequences. progress(done, total) is called on the calling
/// thread after each batch of sequences. Without a hook the sequences of a batch run on ptq's
/// threads (ptq::set_num_threads), one task per sequence; the per-sequence NLLs are summed in
/// sequence order, so the result is bit-identical whatever the thread count. With a hook (which
/// need not be thread-safe) they run one after another.
inline EvalResult evaluate(const Model& m, const std::vector<std::vector<int>>& docs, const ActivationHook& hook = {},
                           const std::function<void(std::size_t, std::size_t)>& progress = {}) {
    EvalResult r;
    constexpr std::size_t batch = 16;  // sequences per progress step
    std::vector<double> nll(batch);
    for (std::size_t b0 = 0; b0 < docs.size(); b0 += batch) {
        const std::size_t n = std::min(batch, docs.size() - b0);
        auto one = [&](std::size_t i) { nll[i] = sequence_nll(m, docs[b0 + i], hook); };
        if (hook)
            for (std::size_t i = 0; i < n; ++i) one(i);
        else ptq::detail::parallel_for(n, one);
        for (std::size_t i = 0; i < n; ++i) {
            const auto& d = docs[b0 + i];
            if (d.size() >= 2) {
                r.nll_sum += nll[i];
                r.predicted_tokens += d.size() - 1;
            }
            ++r.sequences;
        }
        if (progress) progress(b0 + n, docs.size());
    }
    return r;
}

/// Tokens per second of one decode step, measured as the forward pass of a single token
/// (position 0, so attention is over one key and the cost is that of the linears, the norms
/// and the classifier: a decode step with a KV cache minus its attention over the cache),
/// repeated until `seconds` of wall time have passed (at least 3 runs).
inline double decode_tokens_per_second(const Model& m, int token, double seconds = 0.5) {
    using clk = std::chrono::steady_clock;
    const int ids[1] = {token};
    std::size_t runs = 0;
    const auto t0 = clk::now();
    double elapsed = 0.0;
    do {
        const RowMatrix logits = forward(m, ids);
        if (!(logits.rows() == 1)) throw std::logic_error("ptq::llama::decode_tokens_per_second: no logits");
        ++runs;
        elapsed = std::chrono::duration<double>(clk::now() - t0).count();
    } while (elapsed < seconds || runs < 3);
    return static_cast<double>(runs) / elapsed;
}

}  // namespace ptq::llama
