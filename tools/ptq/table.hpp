// `ptq table`: recipe sets evaluated on a llama2.c model, as tables and the docs/RESULTS.md report.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ptq::llama {

struct TableArgs {
    std::string data, model, tokenizer, eval, report;
    std::vector<std::string> recipes, sets;
    std::string calib = "tinystories";
    std::size_t calib_tokens = 32768;
    bool sequential = true;
    bool csv = false, markdown = false;
    /// The measured search (greedy over the recipe keys per bit width, docs/RESULTS.md's comparison
    /// with the reference GPTQ): targets (presets w4, w3, w2, w3pc; empty: all), extra axes
    /// "KEY=V1|V2|...", passes.
    bool search = false;
    /// The presets beside the reference GPTQ (the comparison of --search without the search).
    bool compare = false;
    std::vector<std::string> search_targets, search_axes;
    int search_passes = 2;
};

/// Runs the recipe sets (default set when none is named) and prints the tables; returns the
/// process exit code.
int run_table(const TableArgs& args);
/// Prints the supported formats, the recipe syntax and the sets.
void list_recipe_sets();

}  // namespace ptq::llama
