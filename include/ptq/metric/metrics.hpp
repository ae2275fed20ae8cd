#pragma once
// Error metrics and storage accounting.
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include <Eigen/Core>

#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

namespace detail {
template <class A, class B>
void check_same_shape(const char* fn, const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols())
        throw_invalid(fn, "approx",
                      "shape " + std::to_string(b.rows()) + "x" + std::to_string(b.cols()) +
                          " differs from reference " + std::to_string(a.rows()) + "x" + std::to_string(a.cols()));
}
}  // namespace detail

/// Sum of squared differences, accumulated in double.
template <class A, class B>
double sum_squared_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
    detail::check_same_shape("sum_squared_error", ref, approx);
    return (ref.template cast<double>() - approx.template cast<double>()).squaredNorm();
}

/// Mean squared error; NaN for empty inputs (there is no mean of nothing) or NaN inputs.
template <class A, class B>
double mse(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
    detail::check_same_shape("mse", ref, approx);
    if (ref.size() == 0) return std::numeric_limits<double>::quiet_NaN();
    return sum_squared_error(ref, approx) / double(ref.size());
}

/// Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - approx)^2).
/// +inf when the approximation is exact, NaN when both sums are zero or for empty inputs.
template <class A, class B>
double sqnr_db(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
    detail::check_same_shape("sqnr_db", ref, approx);
    if (ref.size() == 0) return std::numeric_limits<double>::quiet_NaN();
    const double s = ref.template cast<double>().squaredNorm();
    const double n = sum_squared_error(ref, approx);
    if (n == 0.0) return s == 0.0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(s / n);
}

/// max |ref - approx| (0 for empty inputs; NaN if any difference is NaN).
template <class A, class B>
double max_abs_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
    detail::check_same_shape("max_abs_error", ref, approx);
    double m = 0.0;
    for (Eigen::Index j = 0; j < ref.cols(); ++j)
        for (Eigen::Index i = 0; i < ref.rows(); ++i) {
            const double d = std::fabs(double(ref(i, j)) - double(approx(i, j)));
            if (std::isnan(d)) return d;
            m = d > m ? d : m;
        }
    return m;
}

/// Bits of the metadata assumed in the effective-bits accounting. Default: the papers'
/// convention (ZeroQuant / the OPT-BLOOM study), an fp16 scale and an fp16 zero point per group
/// (4 bits, group 32, asymmetric -> 4 + 32/32 = 5 bits). ptq itself stores float32 scales and
/// integer zero points; pass {32, F::bits} to count what ptq stores. MX formats always count
/// their 8-bit E8M0 scale.
struct MetadataBits {
    int scale = 16;
    int zero = 16;
};

/// Effective bits per weight: (elements * b + groups * (scale bits + zero bits)) / elements.
template <QuantFormat F>
double effective_bits(const GroupLayout& layout, const MetadataBits& m = {}) {
    const double n = double(layout.rows) * double(layout.cols);
    if (n == 0.0) return double(F::bits);
    double per_group = F::is_mx ? 8.0 : double(m.scale);
    if constexpr (requires { F::has_zero_point; }) {
        if (F::has_zero_point) per_group += double(m.zero);
    }
    return (n * F::bits + double(layout.num_groups()) * per_group) / n;
}

template <QuantFormat F>
double effective_bits(const QuantizedMatrix<F>& q, const MetadataBits& m = {}) {
    return effective_bits<F>(q.layout(), m);
}

}  // namespace ptq
