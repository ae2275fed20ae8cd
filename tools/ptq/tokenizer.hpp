// ptq::llama::Tokenizer: what the tool needs of a tokenizer (calibration and evaluation text
// to token ids). Implemented by Llama2cTokenizer (tokenizer.bin, or a GGUF "llama" vocabulary)
// and by a SentencePiece tokenizer.model wrapper.
#pragma once

#include <string_view>
#include <vector>

namespace ptq::llama {

class Tokenizer {
public:
    static constexpr int kBos = 1;  ///< llama2.c / SentencePiece-Llama ids
    static constexpr int kEos = 2;

    virtual ~Tokenizer() = default;
    /// Token ids of `text`, with BOS first when `bos`.
    virtual std::vector<int> encode(std::string_view text, bool bos) const = 0;
    virtual int vocab_size() const = 0;
};

}  // namespace ptq::llama
