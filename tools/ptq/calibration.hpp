// Calibration for the tool's quantizer: the token sequences of a calibration set, and the
// inputs of every group of linears (q/k/v, wo, w1/w3, w2) captured with the forward pass.
#pragma once

#include "model.hpp"
#include "tokenizer.hpp"

#include <array>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace ptq::llama {

/// Linear groups that share an input, in the order of the sequential protocol.
inline constexpr int kGroupCount = 4;
inline constexpr int kGroupFirst[kGroupCount] = {0, 3, 4, 5};  // wq, wo, w1, w2
inline const std::vector<std::vector<int>>& group_members() {
    static const std::vector<std::vector<int>> m = {{0, 1, 2}, {3}, {4, 6}, {5}};
    return m;
}

/// Calibration sequences of one set, plus (lazily, shared by all recipes) the fp32 model's
/// inputs of every linear group for the non-sequential protocol.
struct CalibData {
    std::string name;
    std::vector<std::vector<int>> seqs;
    std::size_t tokens = 0;
    struct Fp32Captures {
        /// [layer][group]: the fp32 model's inputs of that group, all calibration tokens.
        std::vector<std::array<RowMatrix, kGroupCount>> x;
    };
    std::shared_ptr<Fp32Captures> fp32;  ///< filled on first non-sequential use
};

/// Stories of tinystories/train_calib.txt that calibration may use (the first ones): the rest of
/// the file is held out for evaluation and never read by the "tinystories" set.
inline constexpr std::size_t kTinyStoriesCalibStories = 1800;

/// Loads a calibration set: "tinystories" (DATA/tinystories/train_calib.txt), "wikitext"
/// (DATA/wikitext2/test.txt) or a file path; `token_budget` tokens (see calibration_sequences).
CalibData load_calibration(const std::string& set, const std::filesystem::path& data_dir, const Tokenizer& tok,
                           int seq_len, std::size_t token_budget);

/// Calibration from pre-tokenized ids: a text file of whitespace-separated integers, one
/// sequence per line (each cut to seq_len); `token_budget` tokens in total. Throws FormatError
/// naming the file and line for a non-integer or an id outside [0, vocab_size).
CalibData load_calibration_ids(const std::filesystem::path& file, int vocab_size, int seq_len,
                               std::size_t token_budget);

/// Inputs of group g of layer l of model m for every calibration state (state = layer-l input).
RowMatrix capture_group(const Model& m, int l, int g, const std::vector<RowMatrix>& states, std::size_t tokens);
/// Layer-0 inputs of every calibration sequence.
std::vector<RowMatrix> initial_states(const Model& m, const CalibData& c);
/// Runs layer l on every state in place.
void advance_states(const Model& m, int l, std::vector<RowMatrix>& states);
/// The fp32 model's inputs of every group (computed once, cached in c.fp32). With `load`,
/// fp32's layers hold no linear weights: each layer is read in turn into a one-layer copy and
/// dropped once its inputs are captured.
const CalibData::Fp32Captures& fp32_captures(const Model& fp32, CalibData& c, const LayerLoader& load = {});

}  // namespace ptq::llama
