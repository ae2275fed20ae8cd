#pragma once
// Scalar reference twins of the dot-product kernels (kernel/gemv.hpp), written one element at
// a time from the formats' definitions.
//  - ref::dot_row: float activations. Summation order differs from the SIMD kernel, so the
//    two agree within the bound stated at kernel::dot_row, not bit for bit.
//  - ref::int_group_dots: integer activations. Exact, so the SIMD kernel equals it.
#include <cstddef>
#include <cstdint>

#include <ptq/format/concepts.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/packing.hpp>

namespace ptq::ref {

/// y = sum_c F::dequantize(code c, params of c's group) * x[c], accumulated left to right in
/// float (one rounding for w^, one for the product, one for each addition).
template <QuantFormat F>
float dot_row(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
              const float* x) noexcept {
    float y = 0.0f;
    for (std::size_t g = 0; g < layout.col_groups(); ++g)
        for (std::size_t c = layout.group_begin(g); c < layout.group_end(g); ++c) {
            const float w = F::dequantize(static_cast<std::uint8_t>(get_code(packed_row, c, F::bits)), params[g]);
            const float p = w * x[c];
            y = y + p;
        }
    return y;
}

/// Signed integer value of a stored code: IntFormat: c - zero (zero = 2^(b-1) for the
/// symmetric formats); MxInt: the sign-extended d-bit two's complement code.
template <QuantFormat F>
std::int64_t int_level(std::uint32_t c, const typename F::Params& p) noexcept {
    if constexpr (F::kind == FormatKind::integer) {
        return std::int64_t(c) - std::int64_t(p.zero);
    } else {
        static_assert(F::kind == FormatKind::mx_integer, "ptq::ref::int_level: integer formats only");
        const std::int64_t sb = std::int64_t(1) << (F::bits - 1);
        return (std::int64_t(c) ^ sb) - sb;
    }
}

/// out[g] = sum_{c in group g} level_F(w code c) * level_A(x code c) for every column group g
/// of the weight row (the activation row `x_codes` holds one stored A code per byte;
/// IntFormat<8, true>'s level is c - 128). Exact (int64).
template <QuantFormat F, QuantFormat A>
void int_group_dots(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
                    const std::uint8_t* x_codes, std::int64_t* out) noexcept {
    const typename A::Params ap{};  // IntFormat<8, true>: zero = 128; MX: unused
    for (std::size_t g = 0; g < layout.col_groups(); ++g) {
        std::int64_t acc = 0;
        for (std::size_t c = layout.group_begin(g); c < layout.group_end(g); ++c)
            acc += int_level<F>(get_code(packed_row, c, F::bits), params[g]) * int_level<A>(x_codes[c], ap);
        out[g] = acc;
    }
}

}  // namespace ptq::ref
