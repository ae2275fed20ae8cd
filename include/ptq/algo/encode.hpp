#pragma once
// Encoding a matrix with parameters chosen elsewhere (clip searches, AWQ, ...).
#include <cstddef>
#include <cstdint>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

/// Quantizes the contiguous row-major matrix x [layout.rows x layout.cols] with the given
/// per-group parameters (row-major [row_groups x col_groups], as QuantizedMatrix stores them):
/// codes = F::quantize(x, params of its group, r) through the SIMD kernel, packed canonically.
template <QuantFormat F, class Arch = xsimd::default_arch>
QuantizedMatrix<F> encode_with_params(const float* x, const GroupLayout& layout, std::vector<typename F::Params> params,
                                      Rounding r) {
    if (params.size() != layout.num_groups())
        detail::throw_invalid("encode_with_params", "params",
                              "has " + std::to_string(params.size()) + " entries for " +
                                  std::to_string(layout.num_groups()) + " groups");
    QuantizedMatrix<F> q(layout);
    std::copy(params.begin(), params.end(), q.params().begin());
    std::vector<std::uint8_t> codes(layout.cols);
    for (std::size_t row = 0; row < layout.rows; ++row) {
        const float* xr = x + row * layout.cols;
        const auto* p = q.row_params(row);
        for (std::size_t g = 0; g < layout.col_groups(); ++g) {
            const std::size_t b = layout.group_begin(g), e = layout.group_end(g);
            kernel::quantize_group<F, Arch>(xr + b, e - b, layout.whole_tensor ? p[0] : p[g], r, codes.data() + b);
        }
        kernel::pack_bits<Arch>(codes.data(), layout.cols, F::bits, q.row_data(row));
    }
    return q;
}

}  // namespace ptq
