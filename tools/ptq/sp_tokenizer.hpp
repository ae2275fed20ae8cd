#pragma once
// A SentencePiece tokenizer (tokenizer.model of a Hugging Face Llama folder) through Debian's
// libsentencepiece: the tokenizer of the calibration and evaluation text of HF inputs.
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer.hpp"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ptq::tool {

class SentencePieceTokenizer : public ptq::llama::Tokenizer {
public:
    /// Loads a serialized SentencePiece ModelProto; throws ptq::file_error naming the file
    /// (missing, unreadable, not a model) .
    explicit SentencePieceTokenizer(const std::filesystem::path& model);
    ~SentencePieceTokenizer() override;
    SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept;
    SentencePieceTokenizer& operator=(SentencePieceTokenizer&&) noexcept;

    /// The ids of `text` (normalized and segmented by the model), preceded by bos_id() if `bos`
    /// and the model has a BOS piece.
    std::vector<int> encode(std::string_view text, bool bos) const override;
    /// The text of `ids` (control pieces such as BOS / EOS give nothing; SentencePiece drops
    /// the dummy-prefix space). Throws ptq::invalid_argument for an id outside [0, vocab_size).
    std::string decode(std::span<const int> ids) const;

    int vocab_size() const override;
    int bos_id() const;  ///< -1 if the model has none
    int eos_id() const;  ///< -1 if the model has none
    const std::string& path() const noexcept { return path_; }

private:
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
    std::string path_;
};

}  // namespace ptq::tool
