#include "calibration.hpp"

#include "calibration_text.hpp"
#include "evaluation.hpp"
#include "forward.hpp"

#include <ptq/parallel.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace ptq::llama {

CalibData load_calibration(const std::string& set, const std::filesystem::path& data_dir, const Tokenizer& tok,
                           int seq_len, std::size_t token_budget) {
    std::filesystem::path file = set;
    if (set == "tinystories") file = data_dir / "tinystories" / "train_calib.txt";
    else if (set == "wikitext") file = data_dir / "wikitext2" / "test.txt";
    CalibData c;
    c.name = set;
    std::string text = read_text_file(file);
    if (set == "tinystories") {
        // The last stories of train_calib.txt are held out for evaluation: calibrate on the
        // first kTinyStoriesCalibStories only, whatever the budget.
        std::size_t pos = 0;
        for (std::size_t n = 0; n < kTinyStoriesCalibStories && pos != std::string::npos; ++n) {
            pos = text.find("<|endoftext|>", pos);
            if (pos != std::string::npos) pos += 1;
        }
        if (pos != std::string::npos) text.resize(pos - 1);
    }
    c.seqs = calibration_sequences(tok, text, seq_len, token_budget);
    for (const auto& s : c.seqs) c.tokens += s.size();
    if (c.tokens == 0) throw FormatError("calibration set '" + set + "' (" + file.string() + ") gave no tokens");
    return c;
}

CalibData load_calibration_ids(const std::filesystem::path& file, int vocab_size, int seq_len,
                               std::size_t token_budget) {
    const std::string text = read_text_file(file);
    CalibData c;
    c.name = file.string();
    std::istringstream lines(text);
    std::string line;
    for (std::size_t ln = 1; std::getline(lines, line) && c.tokens < token_budget; ++ln) {
        std::istringstream in(line);
        std::vector<int> seq;
        std::string w;
        while (in >> w) {
            char* end = nullptr;
            const long v = std::strtol(w.c_str(), &end, 10);
            if (*end || v < 0 || v >= vocab_size)
                throw FormatError("calibration ids " + detail::quote(file) + ", line " + std::to_string(ln) + ": '" +
                                  w + "' is not a token id in [0, " + std::to_string(vocab_size) + ")");
            if (static_cast<int>(seq.size()) < seq_len && c.tokens + seq.size() < token_budget)
                seq.push_back(static_cast<int>(v));
        }
        if (seq.empty()) continue;
        c.tokens += seq.size();
        c.seqs.push_back(std::move(seq));
    }
    if (c.tokens == 0) throw FormatError("calibration ids " + detail::quote(file) + ": no token ids");
    return c;
}

RowMatrix capture_group(const Model& m, int l, int g, const std::vector<RowMatrix>& states, std::size_t tokens) {
    const Eigen::Index in = g == 3 ? m.config.hidden_dim : m.config.dim;
    // Sequence i fills rows [first[i], first[i + 1]) of X; the sequences run on ptq's threads,
    // each with its own scratch, so X does not depend on the thread count.
    std::vector<Eigen::Index> first(states.size() + 1, 0);
    for (std::size_t i = 0; i < states.size(); ++i) first[i + 1] = first[i] + states[i].rows();
    if (first.back() != static_cast<Eigen::Index>(tokens))
        throw std::invalid_argument("ptq: capture_group: the states hold " + std::to_string(first.back()) +
                                    " tokens, the calibration data " + std::to_string(tokens));
    RowMatrix X(static_cast<Eigen::Index>(tokens), in);
    ptq::detail::parallel_for(states.size(), [&](std::size_t i) {
        detail::ForwardScratch scratch;
        const ActivationHook hook = [&](int, std::string_view name, const RowMatrix& a) {
            if (linear_index(name) == kGroupFirst[g]) X.middleRows(first[i], a.rows()) = a;
        };
        RowMatrix x = states[i];
        layer_forward(m, l, x, hook, kGroupFirst[g], &scratch);
    });
    return X;
}

std::vector<RowMatrix> initial_states(const Model& m, const CalibData& c) {
    std::vector<RowMatrix> s;
    s.reserve(c.seqs.size());
    for (const auto& q : c.seqs) s.push_back(embed(m, q));
    return s;
}

void advance_states(const Model& m, int l, std::vector<RowMatrix>& states) {
    ptq::detail::parallel_for(states.size(), [&](std::size_t i) {
        detail::ForwardScratch scratch;
        layer_forward(m, l, states[i], {}, -1, &scratch);
    });
}

const CalibData::Fp32Captures& fp32_captures(const Model& fp32, CalibData& c, const LayerLoader& load) {
    if (c.fp32) return *c.fp32;
    auto caps = std::make_shared<CalibData::Fp32Captures>();
    std::vector<RowMatrix> states = initial_states(fp32, c);
    Model one;  // with `load`: what layer_forward reads of the model, and the layer being captured
    if (load) {
        one.config = fp32.config;
        one.rope_cos = fp32.rope_cos;
        one.rope_sin = fp32.rope_sin;
        one.act_quant = fp32.act_quant;
        one.w2_input_rotation = fp32.w2_input_rotation;
        one.layers.resize(fp32.layers.size());
    }
    for (int l = 0; l < fp32.config.n_layers; ++l) {
        const Model* m = &fp32;
        if (load) {
            Layer& L = one.layers[static_cast<std::size_t>(l)];
            L = fp32.layers[static_cast<std::size_t>(l)];
            load(l, L);
            m = &one;
        }
        std::array<RowMatrix, kGroupCount> layer;
        for (int g = 0; g < kGroupCount; ++g)
            layer[static_cast<std::size_t>(g)] = capture_group(*m, l, g, states, c.tokens);
        caps->x.push_back(std::move(layer));
        advance_states(*m, l, states);
        if (load) one.layers[static_cast<std::size_t>(l)] = Layer();
    }
    c.fp32 = std::move(caps);
    return *c.fp32;
}

}  // namespace ptq::llama
