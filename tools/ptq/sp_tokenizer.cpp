#include "sp_tokenizer.hpp"

#include <system_error>

#include <sentencepiece_processor.h>

#include <ptq/error.hpp>

namespace ptq::tool {

SentencePieceTokenizer::SentencePieceTokenizer(const std::filesystem::path& model)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(model.string()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(model, ec))
        throw file_error(path_, "tokenizer model", "not found (or not a regular file)");
    const auto status = sp_->Load(path_);
    if (!status.ok()) throw file_error(path_, "tokenizer model", "not a SentencePiece model: " + status.ToString());
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;
SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept = default;
SentencePieceTokenizer& SentencePieceTokenizer::operator=(SentencePieceTokenizer&&) noexcept = default;

std::vector<int> SentencePieceTokenizer::encode(std::string_view text, bool bos) const {
    std::vector<int> ids;
    const auto status = sp_->Encode(text, &ids);
    if (!status.ok()) throw file_error(path_, "encode", status.ToString());
    if (bos && sp_->bos_id() >= 0) ids.insert(ids.begin(), sp_->bos_id());
    return ids;
}

std::string SentencePieceTokenizer::decode(std::span<const int> ids) const {
    const int n = vocab_size();
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= n)
            ptq::detail::throw_invalid("tool::SentencePieceTokenizer::decode", "ids",
                                       "id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                           " is outside [0, " + std::to_string(n) + ")");
    std::string text;
    const auto status = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok()) throw file_error(path_, "decode", status.ToString());
    return text;
}

int SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int SentencePieceTokenizer::bos_id() const { return sp_->bos_id(); }
int SentencePieceTokenizer::eos_id() const { return sp_->eos_id(); }

}  // namespace ptq::tool
