#pragma once
// OCP Microscaling integers: MxInt<Bits, Block> with an E8M0 shared scale per block.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include <ptq/format/e8m0.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/format/rounding.hpp>

namespace ptq {

/// MXINT<d> (OCP Microscaling Formats v1.0): a block of `Block` consecutive elements along
/// in_features shares one E8M0 scale X = 2^e; each element is a d-bit two's-complement
/// integer with d-2 fractional bits:
///   value = X * q / 2^(d-2),   q in [-(2^(d-1) - 1), 2^(d-1) - 1]  (-2^(d-1) is never emitted,
///                                                                  and decodes as such if read)
///   e     = floor(log2(max|x|)) (MxScaleRule::ocp_floor, emax_elem = 0), or another rule,
///           clamped to [-127, 127]; all-zero block: e = -127 (byte 0) and zero codes;
///   q     = clamp(round((x * 2^-e) * 2^(d-2)), -(2^(d-1)-1), 2^(d-1)-1)  (two exact
///           power-of-two multiplications, then rounding by QuantOptions::rounding).
/// The stored code is q's low d bits (two's complement). MXINT8: value = X*q/64, |q| <= 127,
/// largest magnitude 1.984375 X. A block holding NaN/Inf: error, or (NonFinite::propagate)
/// scale byte 255 (NaN), zero codes, all outputs NaN.
template <int Bits, std::size_t Block = 32>
struct MxInt {
    static_assert(Bits >= 2 && Bits <= 8, "ptq::MxInt<Bits, Block>: Bits must be in [2, 8] (sign + d-2 fraction bits)");
    static_assert(Block >= 1, "ptq::MxInt<Bits, Block>: Block must be at least 1");

    static constexpr int bits = Bits;
    static constexpr std::size_t block = Block;
    static constexpr FormatKind kind = FormatKind::mx_integer;
    static constexpr bool is_mx = true;
    static constexpr int fraction_bits = Bits - 2;
    static constexpr std::int32_t q_max = (1 << (Bits - 1)) - 1;
    static constexpr std::int32_t q_min = -q_max;
    static constexpr int emax_elem = 0;
    /// Largest element magnitude relative to X: q_max / 2^(d-2).
    static constexpr double max_elem = double(q_max) / double(1 << (Bits - 2));
    static constexpr std::uint32_t code_mask = (1u << Bits) - 1u;
    static constexpr bool has_zero_point = false;

    static std::string name() { return "mxint" + std::to_string(Bits) + "-b" + std::to_string(Block); }

    using Params = MxParams;
    static Params nan_params() noexcept { return {E8M0::nan_byte}; }
    static bool is_nan(const Params& p) noexcept { return E8M0::is_nan(p.scale_byte); }

    static Params make_params(const RangeStats& s, const QuantOptions& o = {}) noexcept {
        return {detail::mx_scale_byte(s, o.mx_scale_rule, emax_elem, 1, max_elem)};
    }

    static std::uint8_t quantize(float x, const Params& p, Rounding r) noexcept {
        const int e = E8M0::exponent(p.scale_byte);
        float t = round_integral((x * detail::exp2i(-e)) * float(1 << fraction_bits), r);
        t = std::fmin(std::fmax(t, float(q_min)), float(q_max));
        return static_cast<std::uint8_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(t)) & code_mask);
    }
    /// Sign-extended code q times 2^(e - (d-2)) (exact; NaN for scale byte 255).
    static float dequantize(std::uint8_t c, const Params& p) noexcept {
        if (E8M0::is_nan(p.scale_byte)) return std::numeric_limits<float>::quiet_NaN();
        const std::int32_t q = static_cast<std::int32_t>(static_cast<std::uint32_t>(c) << (32 - Bits)) >> (32 - Bits);
        return float(q) * detail::exp2i(E8M0::exponent(p.scale_byte) - fraction_bits);
    }
};

}  // namespace ptq
