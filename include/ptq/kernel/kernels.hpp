#pragma once
// Kernel entry points used by the quantizers. Each takes the SIMD architecture as a template
// parameter (default xsimd::default_arch) and equals its scalar twin in kernel/reference.hpp
// bit for bit, for every length.
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include <ptq/format/concepts.hpp>
#include <ptq/format/range.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/kernel/reference.hpp>

namespace ptq::kernel {

template <class Arch = xsimd::default_arch>
RangeStats range(const float* x, std::size_t n) noexcept {
    return ref::range(x, n);
}

template <QuantFormat F, class Arch = xsimd::default_arch>
void quantize_group(const float* x, std::size_t n, const typename F::Params& p, Rounding r, std::uint8_t* codes) noexcept {
    ref::quantize_group<F>(x, n, p, r, codes);
}

template <class Arch = xsimd::default_arch>
void pack_bits(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) noexcept {
    ref::pack_bits(codes, n, bits, out);
}

template <class Arch = xsimd::default_arch>
void unpack_bits(const std::uint8_t* packed, std::size_t first, std::size_t n, int bits, std::uint8_t* codes) noexcept {
    ref::unpack_bits(packed, first, n, bits, codes);
}

template <QuantFormat F, class Arch = xsimd::default_arch>
void dequantize_row(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
                    float* out) noexcept {
    ref::dequantize_row<F>(packed_row, layout, params, out);
}

}  // namespace ptq::kernel
