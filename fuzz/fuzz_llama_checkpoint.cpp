// libFuzzer target: the llama2.c checkpoint loader (tools/ptq/llama2c_checkpoint.hpp) on arbitrary
// bytes: it must load or throw ptq::llama::FormatError.
#include <ptq/error.hpp>

#include "fuzz_file.hpp"
#include "llama2c_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& path = write_fuzz_input(data, size);
    try {
        const ptq::llama::Model m = ptq::llama::load_checkpoint(path);
        // A loaded model is consistent with its config.
        if (m.layers.size() != static_cast<std::size_t>(m.config.n_layers)) __builtin_trap();
        if (m.token_embedding.rows() != m.config.vocab_size || m.token_embedding.cols() != m.config.dim)
            __builtin_trap();
    } catch (const ptq::llama::FormatError&) {
    }
    return 0;
}
