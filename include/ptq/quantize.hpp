#pragma once
// Quantizing a matrix group by group: the one driver every quantizer uses ("choose each
// group's parameters, then encode with them"), round-to-nearest on top of it (quantize,
// fake_quantize), and dequantization.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/parallel.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

namespace detail {
/// No whole-row path: quantize_groups runs every group through choose + quantize_group.
struct NoRowPath {
    template <class P>
    bool operator()(std::size_t, P*, std::uint8_t*) const noexcept {
        return false;
    }
};
}  // namespace detail

/// Visits the groups of `layout` in parameter order (row-major [row_groups x col_groups]):
/// fn(rg, cg, offset, n), the group's elements being [offset, offset + n) of a contiguous
/// row-major rows x cols matrix. A group of several rows (PerTensor) must span whole rows, so
/// that it is contiguous; throws ptq::invalid_argument otherwise.
template <class Fn>
void for_each_group(const GroupLayout& layout, Fn&& fn) {
    const std::size_t ncg = layout.col_groups(), cols = layout.cols;
    if (layout.group_rows > 1 && ncg > 1)
        detail::throw_invalid("for_each_group", "layout", "a group of several rows must span whole rows");
    for (std::size_t rg = 0; rg < layout.row_groups(); ++rg) {
        const std::size_t r0 = layout.row_group_begin(rg), nr = layout.row_group_end(rg) - r0;
        for (std::size_t cg = 0; cg < ncg; ++cg) {
            const std::size_t b = layout.group_begin(cg);
            fn(rg, cg, r0 * cols + b, (layout.group_end(cg) - b) * nr);
        }
    }
}

/// The per-group quantization driver. For every group of the contiguous row-major matrix x
/// [layout.rows x layout.cols] (for_each_group order): params = choose(group data, n, rg, cg),
/// then codes = F::quantize(x, params, r) through the SIMD kernel (all-zero codes for NaN
/// parameters), packed in the canonical layout of kernel/packing.hpp. The row groups run in
/// parallel (ptq::set_num_threads) in fixed chunks of 16, so `choose` must be safe to call from
/// several threads at once (for different groups); each group is computed alone, so the result
/// does not depend on the thread count. If `choose` throws, the exception of the first group
/// (in for_each_group order) that throws is rethrown. `row_path(row, params, packed_row)`, when
/// given, is tried first on each row group of one row: it returns true if it has written that
/// row's parameters and packed codes itself (the values the per-group path gives: e.g.
/// kernel::rtn_row), false to run the per-group path on the row.
template <QuantFormat F, class Arch = xsimd::default_arch, class Choose, class RowPath = detail::NoRowPath>
QuantizedMatrix<F> quantize_groups(const float* x, const GroupLayout& layout, Rounding r, Choose&& choose,
                                   RowPath&& row_path = {}) {
    QuantizedMatrix<F> q(layout);
    if (layout.rows == 0 || layout.cols == 0) return q;
    const std::size_t ncg = layout.col_groups(), nrg = layout.row_groups();
    if (layout.group_rows > 1 && ncg > 1)
        detail::throw_invalid("for_each_group", "layout", "a group of several rows must span whole rows");
    auto params = q.params();
    constexpr std::size_t chunk = 16;  // row groups per task
    detail::parallel_for((nrg + chunk - 1) / chunk, [&](std::size_t task) {
        std::vector<std::uint8_t> codes(layout.group_rows * layout.cols);  // codes of one row group
        for (std::size_t rg = task * chunk; rg < std::min(nrg, (task + 1) * chunk); ++rg) {
            const std::size_t r0 = layout.row_group_begin(rg), nr = layout.row_group_end(rg) - r0;
            if (nr == 1 && row_path(r0, &params[rg * ncg], q.row_data(r0))) continue;
            // Two passes over the row group (in L1/L2): all parameters first, then all codes, so
            // that the groups' independent range -> parameter chains overlap in the core instead
            // of each encode waiting for its own group's parameters.
            for (std::size_t cg = 0; cg < ncg; ++cg) {
                const std::size_t b = layout.group_begin(cg);
                params[rg * ncg + cg] = choose(x + r0 * layout.cols + b, (layout.group_end(cg) - b) * nr, rg, cg);
            }
            for (std::size_t cg = 0; cg < ncg; ++cg) {
                const std::size_t b = layout.group_begin(cg);
                kernel::quantize_group<F, Arch>(x + r0 * layout.cols + b, (layout.group_end(cg) - b) * nr,
                                                params[rg * ncg + cg], r, codes.data() + b);
            }
            for (std::size_t row = r0; row < r0 + nr; ++row)  // the row group is complete: pack its rows
                kernel::pack_bits<Arch>(codes.data() + (row - r0) * layout.cols, layout.cols, F::bits, q.row_data(row));
        }
    });
    return q;
}

/// Encodes x (as quantize_groups) with parameters chosen elsewhere: one per group, row-major
/// [row_groups x col_groups] as QuantizedMatrix stores them.
template <QuantFormat F, class Arch = xsimd::default_arch>
QuantizedMatrix<F> encode_with_params(const float* x, const GroupLayout& layout,
                                      std::span<const typename F::Params> params, Rounding r) {
    if (params.size() != layout.num_groups())
        detail::throw_invalid("encode_with_params", "params",
                              "has " + std::to_string(params.size()) + " entries for " +
                                  std::to_string(layout.num_groups()) + " groups");
    const std::size_t ncg = layout.col_groups();
    return quantize_groups<F, Arch>(
        x, layout, r, [&](const float*, std::size_t, std::size_t rg, std::size_t cg) { return params[rg * ncg + cg]; });
}

namespace detail {
/// Round-to-nearest of w (read as a row-major float matrix) at granularity gran (the argument
/// order of every quantizer: data, options, granularity): per group,
/// range = kernel::range (min/max of the finite values), NaN/Inf by QuantOptions::non_finite
/// (error: ptq::non_finite_error naming `arg`, the row and the group), parameters =
/// choose_params (min-max or the MSE clipping search of QuantOptions::range). Min-max groups of
/// one row go through kernel::rtn_row (all groups of a row at once; the same values), rows it
/// does not take (NaN / Inf, other shapes) through the per-group path.
template <QuantFormat F, class Arch, class G, class Derived>
QuantizedMatrix<F> round_to_nearest(const Eigen::MatrixBase<Derived>& w, const QuantOptions& o, const G& gran,
                                    const char* arg) {
    RowMatrixXf storage;
    const auto x = as_row_major(w, storage);
    const GroupLayout layout = resolve_layout<F>(gran, std::size_t(x.rows()), std::size_t(x.cols()));
    const bool by_rows = o.range == RangeMethod::min_max && layout.group_rows == 1;
    return quantize_groups<F, Arch>(
        x.data(), layout, o.rounding,
        [&](const float* g, std::size_t n, std::size_t rg, std::size_t cg) {
            const RangeStats s = kernel::range<Arch>(g, n);
            if (s.non_finite && o.non_finite == NonFinite::error)
                throw_non_finite("quantize", arg, "row " + std::to_string(rg) + ", group " + std::to_string(cg));
            return choose_params<F>(g, n, s, o);
        },
        [&](std::size_t row, typename F::Params* p, std::uint8_t* packed) {
            return by_rows &&
                   kernel::rtn_row<F, Arch>(x.data() + row * layout.cols, layout.cols, layout.group_cols, o, p, packed);
        });
}
}  // namespace detail

/// Round-to-nearest quantization of w (any dense Eigen expression, read as a row-major float
/// matrix) in format F at granularity G: per group, parameters from the group's range (or the
/// MSE clipping search, QuantOptions::range), codes = F::quantize (formula, rounding and clamp
/// range in the format's comment), packed canonically. NaN/Inf: QuantOptions::non_finite.
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch, class Derived>
QuantizedMatrix<F> quantize(const Eigen::MatrixBase<Derived>& w, const QuantOptions& o = {},
                            const G& granularity = {}) {
    return detail::round_to_nearest<F, Arch>(w, o, granularity, "w");
}

/// Dequantizes into `out` (resized to rows x cols), row by row with the SIMD kernel (rows in
/// parallel).
template <QuantFormat F, class Arch = xsimd::default_arch>
void dequantize_into(const QuantizedMatrix<F>& q, RowMatrixXf& out) {
    out.resize(static_cast<Eigen::Index>(q.rows()), static_cast<Eigen::Index>(q.cols()));
    constexpr std::size_t chunk = 16;  // rows per task (ptq::set_num_threads)
    detail::parallel_for((q.rows() + chunk - 1) / chunk, [&](std::size_t task) {
        for (std::size_t r = task * chunk; r < std::min(q.rows(), (task + 1) * chunk); ++r)
            kernel::dequantize_row<F, Arch>(q.row_data(r), q.layout(), q.row_params(r), out.data() + r * q.cols());
    });
}

/// Dequantized matrix (row-major float).
template <QuantFormat F, class Arch = xsimd::default_arch>
RowMatrixXf dequantize(const QuantizedMatrix<F>& q) {
    RowMatrixXf out;
    dequantize_into<F, Arch>(q, out);
    return out;
}

/// Quantize-dequantize in one call: the matrix the quantized weights stand for.
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch, class Derived>
RowMatrixXf fake_quantize(const Eigen::MatrixBase<Derived>& w, const QuantOptions& o = {}, const G& granularity = {}) {
    return dequantize<F, Arch>(quantize<F, G, Arch>(w, o, granularity));
}

}  // namespace ptq
