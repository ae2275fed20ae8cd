#pragma once
// The int32 bit stream of GPTQ and compressed-tensors checkpoints (the exporters' packer).
#include <cstddef>
#include <cstdint>

namespace ptq::io {

/// Words of a stream of n codes of `bits` bits: ceil(n * bits / 32).
constexpr std::size_t int32_words(std::size_t n, int bits) noexcept {
    return (n * static_cast<std::size_t>(bits) + 31) / 32;
}

/// Packs n codes of `bits` bits (1..8) into int32_words(n, bits) 32-bit words, as the dense
/// little-endian bit stream of GPTQ (`qweight` along in, `qzeros` along out) and of
/// compressed-tensors `pack_to_int32`: code k occupies stream bits [bits*k, bits*k + bits),
/// stream bit j is bit (j % 32) of word j / 32, so a code may straddle two words (3, 5, 6, 7
/// bits); unused high bits of the last word are 0.
/// code(k) returns code k (only its low `bits` bits are used); store(w, word) receives each
/// word once, in order.
template <class Code, class Store>
void pack_int32_stream(std::size_t n, int bits, Code&& code, Store&& store) {
    const std::uint32_t mask = (1u << bits) - 1u;
    std::uint64_t acc = 0;  // pending stream bits, LSB first
    int have = 0;
    std::size_t w = 0;
    for (std::size_t k = 0; k < n; ++k) {
        acc |= std::uint64_t(static_cast<std::uint32_t>(code(k)) & mask) << have;
        have += bits;
        if (have >= 32) {
            store(w++, static_cast<std::uint32_t>(acc));
            acc >>= 32;
            have -= 32;
        }
    }
    if (have > 0) store(w, static_cast<std::uint32_t>(acc));
}

}  // namespace ptq::io
