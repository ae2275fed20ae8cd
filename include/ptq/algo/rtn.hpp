#pragma once
// RTN: round-to-nearest quantization of a matrix in any format and granularity.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

namespace detail {

/// Evaluates any dense Eigen expression into a contiguous row-major float matrix (no copy
/// when it already is one: float, row-major, unit inner stride, outer stride == cols).
template <class Derived>
Eigen::Ref<const RowMatrixXf> as_row_major(const Eigen::MatrixBase<Derived>& m, RowMatrixXf& storage) {
    if constexpr (std::is_same_v<typename Derived::Scalar, float> && (Derived::Flags & Eigen::RowMajorBit) &&
                  (Derived::Flags & Eigen::DirectAccessBit)) {
        if (m.derived().innerStride() == 1 && m.derived().outerStride() == m.cols()) return Eigen::Ref<const RowMatrixXf>(m.derived());
    }
    storage = m.template cast<float>();
    return Eigen::Ref<const RowMatrixXf>(storage);
}

template <QuantFormat F>
void fail_non_finite(const char* fn, const char* arg, std::size_t r, std::size_t g) {
    throw_non_finite(fn, arg, "row " + std::to_string(r) + ", group " + std::to_string(g));
}

}  // namespace detail

/// Round-to-nearest quantizer of format F at granularity G (an Eigen-decomposition-style
/// object: options in the constructor, quantize() to run).
///
/// Per group (see GroupLayout): range = kernel::range (min/max of finite values) or the MSE
/// clipping search (QuantOptions::range); parameters = F::make_params; codes = F::quantize
/// (formula, rounding and clamp range in the format's comment); codes packed in the canonical
/// layout of kernel/packing.hpp. NaN/Inf: QuantOptions::non_finite (error by default: a
/// ptq::non_finite_error naming the argument, row and group).
/// The input is read row by row as a row-major float matrix (copied if it is not one).
template <QuantFormat F, class G = default_granularity_t<F>, class Arch = xsimd::default_arch>
class Rtn {
public:
    explicit Rtn(const QuantOptions& options = {}, const G& granularity = {}) : opt_(options), gran_(granularity) {
        check_granularity<F, G>();
    }
    const QuantOptions& options() const noexcept { return opt_; }
    const G& granularity() const noexcept { return gran_; }

    template <class Derived>
    QuantizedMatrix<F> quantize(const Eigen::MatrixBase<Derived>& w, const char* arg_name = "w") const {
        RowMatrixXf storage;
        const auto x = detail::as_row_major(w, storage);
        const auto rows = static_cast<std::size_t>(x.rows()), cols = static_cast<std::size_t>(x.cols());
        const GroupLayout layout = resolve_layout<F>(gran_, rows, cols);
        QuantizedMatrix<F> q(layout);
        if (rows == 0 || cols == 0) return q;
        std::vector<std::uint8_t> codes(layout.whole_tensor ? rows * cols : cols);

        if (layout.whole_tensor) {
            // One group spanning the contiguous row-major buffer.
            const float* data = x.data();
            const std::size_t n = rows * cols;
            const RangeStats s = kernel::range<Arch>(data, n);
            if (s.non_finite && opt_.non_finite == NonFinite::error) detail::fail_non_finite<F>("quantize", arg_name, 0, 0);
            const auto p = choose_params<F>(data, n, s, opt_);
            q.params()[0] = p;
            kernel::quantize_group<F, Arch>(data, n, p, opt_.rounding, codes.data());
            for (std::size_t r = 0; r < rows; ++r)
                kernel::pack_bits<Arch>(codes.data() + r * cols, cols, F::bits, q.row_data(r));
            return q;
        }
        const std::size_t ng = layout.col_groups();
        for (std::size_t r = 0; r < rows; ++r) {
            const float* row = x.data() + r * cols;
            auto* params = q.row_params(r);
            for (std::size_t g = 0; g < ng; ++g) {
                const std::size_t b = layout.group_begin(g), n = layout.group_end(g) - b;
                const RangeStats s = kernel::range<Arch>(row + b, n);
                if (s.non_finite && opt_.non_finite == NonFinite::error)
                    detail::fail_non_finite<F>("quantize", arg_name, r, g);
                params[g] = choose_params<F>(row + b, n, s, opt_);
                kernel::quantize_group<F, Arch>(row + b, n, params[g], opt_.rounding, codes.data() + b);
            }
            kernel::pack_bits<Arch>(codes.data(), cols, F::bits, q.row_data(r));
        }
        return q;
    }

private:
    QuantOptions opt_;
    G gran_;
};

/// Dequantizes into `out` (resized to rows x cols), row by row with the SIMD kernel.
template <QuantFormat F, class Arch = xsimd::default_arch>
void dequantize_into(const QuantizedMatrix<F>& q, RowMatrixXf& out) {
    out.resize(static_cast<Eigen::Index>(q.rows()), static_cast<Eigen::Index>(q.cols()));
    for (std::size_t r = 0; r < q.rows(); ++r)
        kernel::dequantize_row<F, Arch>(q.row_data(r), q.layout(), q.row_params(r), out.data() + r * q.cols());
}

/// Dequantized matrix (row-major float).
template <QuantFormat F, class Arch = xsimd::default_arch>
RowMatrixXf dequantize(const QuantizedMatrix<F>& q) {
    RowMatrixXf out;
    dequantize_into<F, Arch>(q, out);
    return out;
}

/// quantize(w) with RTN (free-function form of Rtn<F, G>).
template <QuantFormat F, class G = default_granularity_t<F>, class Derived>
QuantizedMatrix<F> quantize(const Eigen::MatrixBase<Derived>& w, const G& granularity = {}, const QuantOptions& o = {}) {
    return Rtn<F, G>(o, granularity).quantize(w);
}

/// Quantize-dequantize in one call: the matrix the quantized weights stand for.
template <QuantFormat F, class G = default_granularity_t<F>, class Derived>
RowMatrixXf fake_quantize(const Eigen::MatrixBase<Derived>& w, const G& granularity = {}, const QuantOptions& o = {}) {
    return dequantize(Rtn<F, G>(o, granularity).quantize(w));
}

/// Dynamic per-token fake quantization of activations X [tokens x in_features]: one set of
/// parameters per row (PerToken), or per group of the row for MX formats / PerGroup.
template <QuantFormat F, class Derived>
RowMatrixXf fake_quantize_activations(const Eigen::MatrixBase<Derived>& x, const QuantOptions& o = {}) {
    if constexpr (F::is_mx) return fake_quantize<F>(x, default_granularity_t<F>{}, o);
    else return fake_quantize<F>(x, PerToken{}, o);
}

}  // namespace ptq
