#pragma once
// OCP Microscaling minifloats: MxFp<E, M, Block> (MXFP8 / MXFP6 / MXFP4).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include <ptq/format/e8m0.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/format/rounding.hpp>

namespace ptq {

/// MXFP: OCP microscaling minifloats, MxFp<E, M, Block> with an E8M0 shared scale:
///   e = floor(log2(max|x|)) - emax_elem (emax_elem = 8 E4M3, 15 E5M2, 4 E3M2, 2 E2M3/E2M1)
///       (or another MxScaleRule), clamped to [-127, 127]; all-zero block: e = -127;
///   code = Minifloat<E,M>::encode(x * 2^-e, rounding, saturate);  value = 2^e * decode(code).
/// MXFP8 = MxFp<4,3> or MxFp<5,2>, MXFP6 = MxFp<3,2> or MxFp<2,3>, MXFP4 = MxFp<2,1>.
template <int E, int M, std::size_t Block = 32>
struct MxFp {
    static_assert(Block >= 1, "ptq::MxFp<E, M, Block>: Block must be at least 1");
    using element = Minifloat<E, M>;  // static_asserts the element type

    static constexpr int bits = element::bits;
    static constexpr std::size_t block = Block;
    static constexpr FormatKind kind = FormatKind::mx_minifloat;
    static constexpr bool is_mx = true;
    static constexpr int emax_elem = element::emax;
    static constexpr bool has_zero_point = false;

    static std::string name() { return "mx" + element::name() + "-b" + std::to_string(Block); }

    using Params = MxParams;
    static Params nan_params() noexcept { return {E8M0::nan_byte}; }
    static bool is_nan(const Params& p) noexcept { return E8M0::is_nan(p.scale_byte); }

    static Params make_params(const RangeStats& s, const QuantOptions& o = {}) noexcept {
        return {detail::mx_scale_byte(s, o.mx_scale_rule, emax_elem, emax_elem, element::max_normal)};
    }
    static std::uint8_t quantize(float x, const Params& p, Rounding r) noexcept {
        return element::encode(x * detail::exp2i(-E8M0::exponent(p.scale_byte)), r, Overflow::saturate);
    }
    static float dequantize(std::uint8_t c, const Params& p) noexcept {
        if (E8M0::is_nan(p.scale_byte)) return std::numeric_limits<float>::quiet_NaN();
        return element::decode(c) * detail::exp2i(E8M0::exponent(p.scale_byte));
    }
};

using MxFp8E4M3 = MxFp<4, 3, 32>;
using MxFp8E5M2 = MxFp<5, 2, 32>;
using MxFp6E3M2 = MxFp<3, 2, 32>;
using MxFp6E2M3 = MxFp<2, 3, 32>;
using MxFp4 = MxFp<2, 1, 32>;

}  // namespace ptq
