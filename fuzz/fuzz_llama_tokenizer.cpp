// libFuzzer target: the llama2.c tokenizer loader (tools/ptq/llama2c_tokenizer.hpp) on arbitrary
// bytes, then its encoder / decoder on a fixed text: load or throw ptq::llama::FormatError.
#include <ptq/error.hpp>

#include "fuzz_file.hpp"
#include "llama2c_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& path = write_fuzz_input(data, size);
    try {
        const auto tok = ptq::llama::Llama2cTokenizer::load(path, size % 2 == 0 ? 0 : 300);
        const auto ids = tok.encode("Once upon a time, \xC3\xA9t\xC3\xA9 \xF0\x9F\x99\x82 <0x41>", true, true);
        for (int id : ids)
            if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
        (void)tok.decode(ids);
    } catch (const ptq::llama::FormatError&) {
    }
    return 0;
}
