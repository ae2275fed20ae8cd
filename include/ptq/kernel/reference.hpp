#pragma once
// Scalar reference kernels: the oracles the SIMD kernels (kernel/kernels.hpp) must equal bit
// for bit (docs/DESIGN.md §9). They are written for clarity, one element at a time.
#include <cstddef>
#include <cstdint>

#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/packing.hpp>

namespace ptq::ref {

/// Range (min/max over finite values + non-finite flag) of x[0..n).
inline RangeStats range(const float* x, std::size_t n) noexcept { return range_of(x, n); }

/// codes[i] = F::quantize(x[i], p, r) for i < n. A group with NaN parameters (NonFinite::
/// propagate) gets all-zero codes.
template <QuantFormat F>
void quantize_group(const float* x, std::size_t n, const typename F::Params& p, Rounding r,
                    std::uint8_t* codes) noexcept {
    if (F::is_nan(p)) {
        for (std::size_t i = 0; i < n; ++i) codes[i] = 0;
        return;
    }
    for (std::size_t i = 0; i < n; ++i) codes[i] = F::quantize(x[i], p, r);
}

/// out[i] = F::dequantize(code first+i of the packed stream, p) for i < n.
template <QuantFormat F>
void dequantize_group(const std::uint8_t* packed, std::size_t first, std::size_t n, const typename F::Params& p,
                      float* out) noexcept {
    for (std::size_t i = 0; i < n; ++i)
        out[i] = F::dequantize(static_cast<std::uint8_t>(get_code(packed, first + i, F::bits)), p);
}

/// Dequantizes one packed row (layout.cols codes) whose groups use params[0 .. col_groups).
template <QuantFormat F>
void dequantize_row(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
                    float* out) noexcept {
    const std::size_t ng = layout.col_groups();
    for (std::size_t g = 0; g < ng; ++g) {
        const std::size_t b = layout.group_begin(g), e = layout.group_end(g);
        dequantize_group<F>(packed_row, b, e - b, params[g], out + b);
    }
}

}  // namespace ptq::ref
