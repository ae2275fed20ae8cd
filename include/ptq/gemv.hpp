#pragma once
// Matrix-vector and matrix-matrix products with quantized weights, straight from the packed
// codes (no dequantized copy of W):
//   y = gemv(w, x)    w: QuantizedMatrix<F> [out x in] (W^ its dequantized value), x [in]   -> y [out] = W^ x
//   Y = gemm(w, X)    X [tokens x in] -> Y [tokens x out], Y = X W^T (row t of Y = W^ x_t)
// with float activations (every format), or with quantized activations (integer kernels):
//   Y = gemm(w, xq)   xq: QuantizedMatrix<IntFormat<8, true>> [tokens x in], one scale per token
//                     (PerToken or PerTensor), w: IntFormat<4 or 8, sym or asym>;
//                     or xq: QuantizedMatrix<MxInt<8, K>> with w: QuantizedMatrix<MxInt<8, K>>.
// The SIMD architecture is a template parameter (default xsimd::default_arch). Numerics and
// error bounds: kernel::dot_row (float activations); integer activations: kernel::int_dot_row
// (rows and groups multiples of 32 on AVX2 / AVX-512: exact int32 lane dots, float
// accumulation), else detail::combine_int_dots (exact per-group integer dots).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <ptq/kernel/xsimd.hpp>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/kernel/gemv.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/parallel.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq {

namespace detail {

/// Weight rows per task of gemm (fixed: the split does not depend on the thread count).
inline constexpr std::size_t gemm_rows_per_task = 16;

/// y of one (weight row, activation row) pair from the exact group dots I_g
/// (kernel::int_group_dots):
///   IntFormat weights x IntFormat<8, true> activations (one activation scale s_x):
///     y = s_x * (sum_g s_g * float(I_g))   s_g * float(I_g) rounded to float, summed left to
///     right in float, then one multiplication by s_x. float(I_g) is exact for |I_g| <= 2^24.
///     Bound: |y - sum_i w^_i x^_i| <= (col_groups + 5) * u * sum_i |w^_i x^_i|, u = 2^-24
///     (w^, x^ the dequantized values; first order, no overflow or underflow).
///   MxInt<8> x MxInt<8>:  y = sum_b (float(I_b) * 2^(e_w,b - 6)) * 2^(e_x,b - 6), summed left
///     to right in float; the products are exact (|I_b| < 2^24, power-of-two factors) unless
///     they underflow, so the bound is (col_groups + 1) * u * sum_i |w^_i x^_i|.
///   NaN parameters (scale NaN, E8M0 byte 255) give NaN.
template <QuantFormat F, QuantFormat A>
float combine_int_dots(const std::int64_t* dots, std::size_t ngroups, const typename F::Params* wp,
                       const typename A::Params* xp) noexcept {
    float y = 0.0f;
    if constexpr (F::kind == FormatKind::mx_integer) {
        for (std::size_t g = 0; g < ngroups; ++g) {
            const float kw = kernel::detail::DequantConstants<F>(wp[g]).k0;  // 2^(e_w - 6), NaN for byte 255
            const float kx = kernel::detail::DequantConstants<A>(xp[g]).k0;
            y += (static_cast<float>(dots[g]) * kw) * kx;
        }
        return y;
    } else {
        for (std::size_t g = 0; g < ngroups; ++g) y += wp[g].scale * static_cast<float>(dots[g]);
        return xp[0].scale * y;
    }
}

}  // namespace detail

/// Y = X W^T for float activations X [tokens x in] (a dense row-major float matrix or any
/// expression Eigen can evaluate into one; a non-matching expression is copied once):
/// Y(t, o) = kernel::dot_row(row o of w, row t of X) (its comment states the summation order
/// and the error bound). Throws ptq::invalid_argument when X.cols() != w.cols(). Returns a
/// [tokens x out] row-major matrix. (The activations are an Eigen::Ref rather than a deduced
/// expression type so that gemm<F, A, Arch> below can be named with explicit arguments.)
template <QuantFormat F, class Arch = xsimd::default_arch>
RowMatrixXf gemm(const QuantizedMatrix<F>& w, const Eigen::Ref<const RowMatrixXf>& X) {
    if (std::size_t(X.cols()) != w.cols())
        detail::throw_invalid(
            "gemm", "X", "has " + std::to_string(X.cols()) + " columns, the weights have " + std::to_string(w.cols()));
    RowMatrixXf y(X.rows(), static_cast<Eigen::Index>(w.rows()));
    const std::size_t work = std::size_t(X.rows()) * w.rows() * w.cols();  // small products stay on this thread
    // Weight rows outer (fixed chunks, one task each: ptq::set_num_threads does not change the
    // result), tokens inner: a weight row is read once for all tokens.
    detail::parallel_for(
        (w.rows() + detail::gemm_rows_per_task - 1) / detail::gemm_rows_per_task, work, [&](std::size_t task) {
            const std::size_t o1 = std::min(w.rows(), (task + 1) * detail::gemm_rows_per_task);
            for (std::size_t o = task * detail::gemm_rows_per_task; o < o1; ++o)
                for (Eigen::Index t = 0; t < X.rows(); ++t)
                    y(t, Eigen::Index(o)) =
                        kernel::dot_row<F, Arch>(w.row_data(o), w.layout(), w.row_params(o), X.row(t).data());
        });
    return y;
}

/// y = W^ x for a float vector x [in]: gemm(w, x as one token) as a vector (y[o] =
/// kernel::dot_row, the same row tasks). Throws ptq::invalid_argument when x.size() != w.cols().
template <QuantFormat F, class Arch = xsimd::default_arch>
Eigen::VectorXf gemv(const QuantizedMatrix<F>& w, const Eigen::Ref<const Eigen::VectorXf>& x) {
    if (std::size_t(x.size()) != w.cols())
        detail::throw_invalid("gemv", "x",
                              "has " + std::to_string(x.size()) + " elements, the weights have " +
                                  std::to_string(w.cols()) + " columns");
    const Eigen::Map<const RowMatrixXf> x1(x.data(), 1, x.size());
    return gemm<F, Arch>(w, x1).row(0).transpose();
}

/// Y = X^ W^T with quantized activations xq [tokens x in] (X^ their dequantized value): each
/// activation row is prepared once (kernel::prepare_int_acts), then kernel::int_dot_row per
/// (weight row, token) when kernel::int_dot_row_fits(w.layout()), else the exact per-group
/// integer dots (kernel::int_group_dots) and the float combination of detail::combine_int_dots.
/// Weight rows run in fixed tasks of detail::gemm_rows_per_task (ptq::set_num_threads does not
/// change the result). Supported pairs: kernel::has_int_dot (others fail
/// to compile). Throws ptq::invalid_argument on a column mismatch, on IntFormat activations
/// with more than one scale per row (use PerToken or PerTensor), and on MX layouts whose
/// blocks differ.
template <QuantFormat F, QuantFormat A, class Arch = xsimd::default_arch>
RowMatrixXf gemm(const QuantizedMatrix<F>& w, const QuantizedMatrix<A>& xq) {
    static_assert(kernel::has_int_dot<F, A>,
                  "ptq::gemm(QuantizedMatrix<F>, QuantizedMatrix<A>): integer kernels exist for IntFormat<4|8, sym or "
                  "asym> weights x IntFormat<8, true> activations and for MxInt<8, K> x MxInt<8, K>; dequantize the "
                  "activations and use gemm(w, X) otherwise");
    const std::size_t n = w.cols();
    if (xq.cols() != n)
        detail::throw_invalid("gemm", "xq",
                              "has " + std::to_string(xq.cols()) + " columns, the weights have " + std::to_string(n));
    if constexpr (F::is_mx) {
        if (n > 0 && (xq.layout().group_cols != w.layout().group_cols || xq.layout().group_rows != 1 ||
                      w.layout().group_rows != 1))
            detail::throw_invalid("gemm", "xq", "MX blocks of the activations and the weights must coincide");
    } else {
        if (n > 0 && xq.layout().col_groups() != 1)
            detail::throw_invalid("gemm", "xq", "integer activations need one scale per token (PerToken or PerTensor)");
    }
    RowMatrixXf y = RowMatrixXf::Zero(static_cast<Eigen::Index>(xq.rows()), static_cast<Eigen::Index>(w.rows()));
    if (n == 0) return y;
    const GroupLayout& L = w.layout();
    const std::size_t ng = L.col_groups(), T = xq.rows();
    const bool fused = kernel::int_dot_row_fits<Arch>(L);
    // Activations prepared once per token (a task each), reused by every weight row.
    std::vector<std::int8_t> q(T * n);
    std::vector<std::int32_t> lane_neg(fused ? T * (n / 4) : 0);
    std::vector<std::int64_t> qsums(fused ? 0 : T * ng);
    const std::size_t work = T * w.rows() * n;  // small products stay on this thread
    detail::parallel_for(T, T * n, [&](std::size_t t) {
        if (fused) {
            kernel::prepare_int_acts<F, A>(xq.row_data(t), n, q.data() + t * n, lane_neg.data() + t * (n / 4));
            return;
        }
        kernel::activation_q<A>(xq.row_data(t), n, q.data() + t * n);
        for (std::size_t g = 0; g < ng; ++g) {
            std::int64_t s = 0;
            for (std::size_t i = L.group_begin(g); i < L.group_end(g); ++i) s += q[t * n + i];
            qsums[t * ng + g] = s;
        }
    });
    // Weight rows outer in fixed chunks (one task each, each output element computed by one
    // task: bit-identical for any thread count), tokens inner.
    detail::parallel_for(
        (w.rows() + detail::gemm_rows_per_task - 1) / detail::gemm_rows_per_task, work, [&](std::size_t task) {
            const std::size_t o1 = std::min(w.rows(), (task + 1) * detail::gemm_rows_per_task);
            std::vector<std::int64_t> dots(fused ? 0 : ng);
            std::vector<std::uint8_t> scratch(fused || F::bits == 8 ? 0 : n);
            for (std::size_t o = task * detail::gemm_rows_per_task; o < o1; ++o) {
                for (std::size_t t = 0; t < T; ++t) {
                    float& out = y(Eigen::Index(t), Eigen::Index(o));
                    if constexpr (kernel::has_int_dot_row<Arch>) {
                        if (fused) {
                            out = kernel::int_dot_row<F, A, Arch>(w.row_data(o), L, w.row_params(o), q.data() + t * n,
                                                                  lane_neg.data() + t * (n / 4), xq.row_params(t));
                            continue;
                        }
                    }
                    kernel::int_group_dots<F, A, Arch>(w.row_data(o), L, w.row_params(o), q.data() + t * n,
                                                       qsums.data() + t * ng, scratch.data(), dots.data());
                    out = detail::combine_int_dots<F, A>(dots.data(), ng, w.row_params(o), xq.row_params(t));
                }
            }
        });
    return y;
}

/// y = W^ x^ for one quantized activation row (xq has exactly one row): gemm(w, xq) as a vector.
template <QuantFormat F, QuantFormat A, class Arch = xsimd::default_arch>
Eigen::VectorXf gemv(const QuantizedMatrix<F>& w, const QuantizedMatrix<A>& xq) {
    if (xq.rows() != 1)
        detail::throw_invalid("gemv", "xq", "must have exactly one row, got " + std::to_string(xq.rows()));
    return gemm<F, A, Arch>(w, xq).row(0).transpose();
}

}  // namespace ptq
