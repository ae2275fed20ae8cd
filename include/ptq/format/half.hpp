#pragma once
// IEEE 754 binary16 (fp16) and bfloat16 (bf16): the 16-bit storage types of scales, zero
// points and unquantized tensors in model files (GGUF, GPTQ, AWQ, safetensors).
//
// Encoding (float -> 16 bits) rounds to nearest with ties to even (IEEE roundTiesToEven) on
// the bit pattern. Overflow gives +-Inf (fp16: |x| >= 65520, the tie above the largest
// finite value 65504 rounds to Inf; bf16: the rounding carries into the all-ones exponent).
// fp16 keeps subnormals (steps of 2^-24); magnitudes below 2^-25 round to +-0, 2^-25 itself
// ties to 0 (even). NaN stays NaN (quiet, sign and top payload bits kept). Decoding is exact.
#include <bit>
#include <cstdint>

namespace ptq {

/// float -> fp16 bit pattern, round to nearest even (see the file comment).
constexpr std::uint16_t float_to_half_bits(float x) noexcept {
    const std::uint32_t f = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t sign = (f >> 16) & 0x8000u;
    const std::uint32_t a = f & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN
    if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520 (and Inf) -> Inf
    if (a >= 0x38800000u) {  // normal fp16 (|x| >= 2^-14): rebias 127 -> 15, round 23 -> 10 mantissa bits
        std::uint32_t r = a - 0x38000000u;
        r += 0xFFFu + ((r >> 13) & 1u);  // ties to even; a carry moves into the exponent correctly
        return static_cast<std::uint16_t>(sign | (r >> 13));
    }
    // Subnormal fp16: code = round(|x| / 2^-24) = round(m * 2^(e - 126)), m with its implicit bit.
    const std::uint32_t e = a >> 23;
    if (e < 102) return static_cast<std::uint16_t>(sign);  // |x| < 2^-25 (and float zero/subnormal)
    const std::uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126u - e;  // 14 .. 24
    std::uint32_t q = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;  // may carry into the smallest normal
    return static_cast<std::uint16_t>(sign | q);
}

/// fp16 bit pattern -> float (exact).
constexpr float half_bits_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0) {  // zero / subnormal: man * 2^-24, exact in float
        const float v = static_cast<float>(man) * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (man << 13));  // Inf / NaN
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

/// float -> bf16 bit pattern (the top 16 bits of the float, rounded to nearest even).
constexpr std::uint16_t float_to_bf16_bits(float x) noexcept {
    const std::uint32_t f = std::bit_cast<std::uint32_t>(x);
    if ((f & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((f >> 16) | 0x40u);  // quiet NaN
    return static_cast<std::uint16_t>((f + 0x7FFFu + ((f >> 16) & 1u)) >> 16);
}

/// bf16 bit pattern -> float (exact).
constexpr float bf16_bits_to_float(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// x rounded to the nearest fp16 value, as a float (Inf past the fp16 range).
constexpr float round_to_half(float x) noexcept { return half_bits_to_float(float_to_half_bits(x)); }
/// x rounded to the nearest bf16 value, as a float.
constexpr float round_to_bf16(float x) noexcept { return bf16_bits_to_float(float_to_bf16_bits(x)); }

}  // namespace ptq
