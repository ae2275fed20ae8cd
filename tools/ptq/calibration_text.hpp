// Calibration token sequences from a text (TinyStories-style stories or one long document),
// with a token budget.
#pragma once

#include "evaluation.hpp"
#include "model.hpp"
#include "tokenizer.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

// ---------------------------------------------------------------------------------------------
// Calibration data
// ---------------------------------------------------------------------------------------------

/// Calibration token sequences from `text`, at most `token_budget` tokens in total (each token
/// fed to the model counts), every sequence at most seq_len tokens:
///  - text with "<|endoftext|>" separator lines (TinyStories): stories in file order, each
///    encoded with BOS and truncated to seq_len, taken whole while they fit; the last one is
///    cut so that the total equals the budget exactly (when the text is long enough);
///  - any other text (WikiText-2's test set is one long document): encoded once without BOS
///    and cut into consecutive windows of seq_len - 1 tokens, each prefixed with BOS (the model
///    was trained with BOS at the start of every sequence), the last window cut to the budget.
inline std::vector<std::vector<int>> calibration_sequences(const Tokenizer& tok, std::string_view text, int seq_len,
                                                           std::size_t token_budget) {
    if (seq_len < 2) throw std::invalid_argument("ptq::llama::calibration_sequences: seq_len must be >= 2");
    std::vector<std::vector<int>> seqs;
    std::size_t total = 0;
    auto take = [&](std::vector<int> ids) {
        if (ids.size() < 2 || total >= token_budget) return;
        if (ids.size() > token_budget - total) ids.resize(token_budget - total);
        if (ids.size() < 2) return;
        total += ids.size();
        seqs.push_back(std::move(ids));
    };
    if (text.find("<|endoftext|>") != std::string_view::npos) {
        for (const auto& story : split_stories(text)) {
            if (total >= token_budget) break;
            std::vector<int> ids = tok.encode(story, /*bos=*/true);
            if (static_cast<int>(ids.size()) > seq_len) ids.resize(static_cast<std::size_t>(seq_len));
            take(std::move(ids));
        }
        return seqs;
    }
    // One long document: encode a prefix large enough for the budget (>= 1 byte per token; the
    // encoder's dummy-prefix space only affects the very first token), then cut windows.
    const std::size_t window = static_cast<std::size_t>(seq_len) - 1;
    std::size_t bytes = std::min(text.size(), std::max<std::size_t>(4096, token_budget * 8));
    std::vector<int> stream;
    while (true) {
        stream = tok.encode(text.substr(0, bytes), /*bos=*/false);
        // Tokens at the cut may differ from a full encoding; keep a safety margin of 16 tokens.
        if (bytes == text.size() || stream.size() > token_budget + 16) break;
        bytes = std::min(text.size(), bytes * 2);
    }
    if (bytes < text.size() && stream.size() > 16) stream.resize(stream.size() - 16);
    for (std::size_t b = 0; b < stream.size() && total < token_budget; b += window) {
        std::vector<int> ids{Tokenizer::kBos};
        const std::size_t e = std::min(stream.size(), b + window);
        ids.insert(ids.end(), stream.begin() + static_cast<std::ptrdiff_t>(b),
                   stream.begin() + static_cast<std::ptrdiff_t>(e));
        take(std::move(ids));
    }
    return seqs;
}

}  // namespace ptq::llama
