#pragma once
// Error-aware ("asymmetric") calibration of GPTQ (GPTAQ / GPTQv2): fit a linear to the fp32
// model's outputs W X_fp^T from the quantized model's inputs X_q, by running GPTQ on a
// least-squares target W~ with the Hessian of X_q.
#include <cmath>
#include <string>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>

namespace ptq {

/// Options of gptaq_target. Plain struct; defaults documented.
struct GptaqOptions {
    /// Fraction of the asymmetry correction applied (1: the exact least-squares target; GPTAQ's
    /// reference code scales its correction by 0.25). Must be finite and >= 0.
    double alpha = 1.0;
    /// Damping of the solve, as GPTQ's: lambda = percdamp * mean(diag H) (dead channels H_jj = 0
    /// counted as 1). Must be finite and >= 0; with 0 the solve needs a positive definite H.
    double percdamp = 0.01;
};

/// The asymmetry cross term D = 2/n (X_fp - X_q)^T X_q [in x in] (double products and sums) of
/// the fp32 model's inputs X_fp and the quantized model's inputs X_q of one linear, both
/// [tokens x in], token t of X_fp being the fp32 counterpart of token t of X_q. Zero when
/// X_fp == X_q. Throws ptq::invalid_argument for mismatched shapes and ptq::non_finite_error for
/// NaN/Inf.
template <class DF, class DQ>
Eigen::MatrixXd asymmetry_cross_term(const Eigen::MatrixBase<DF>& x_fp, const Eigen::MatrixBase<DQ>& x_q) {
    if (x_fp.rows() != x_q.rows() || x_fp.cols() != x_q.cols())
        detail::throw_invalid("asymmetry_cross_term", "x_fp",
                              "is " + std::to_string(x_fp.rows()) + "x" + std::to_string(x_fp.cols()) + ", x_q is " +
                                  std::to_string(x_q.rows()) + "x" + std::to_string(x_q.cols()));
    const Eigen::MatrixXd q = x_q.template cast<double>();
    const Eigen::MatrixXd dx = x_fp.template cast<double>() - q;
    if (!detail::all_finite(q)) detail::throw_non_finite("asymmetry_cross_term", "x_q", "calibration inputs");
    if (!detail::all_finite(dx)) detail::throw_non_finite("asymmetry_cross_term", "x_fp", "calibration inputs");
    const double f = q.rows() > 0 ? 2.0 / double(q.rows()) : 0.0;
    return f * (dx.transpose() * q);
}

/// GPTAQ's least-squares target (docs/DESIGN.md §12.7). The layer objective of error-aware
/// calibration, ||X_fp W^T - X_q W^^T||^2, equals ||X_q (W~ - W^)^T||^2 + const for
///   W~ = W + alpha W D Hd^-1,   Hd = H + lambda I,   lambda = percdamp * mean(diag H),
/// with H = 2/n X_q^T X_q (GPTQ's Hessian) and D = asymmetry_cross_term(X_fp, X_q), alpha = 1
/// and lambda = 0 (X_q W~^T is then the projection of X_fp W^T on the column space of X_q); so
/// GPTQ (or refine_rounding) on (W~, H) minimises the error-aware objective. Dead channels
/// (H_jj = 0, hence D_{:,j} = 0) get Hd_jj = 1 and keep W~_{:,j} = W_{:,j}. W~ == W exactly when
/// D == 0 (X_fp == X_q) or alpha == 0. The solve is a Cholesky factorisation of Hd in double;
/// when it fails, lambda is multiplied by 10 (at most 12 times, as GPTQ does), then ptq::error is
/// thrown. Shapes: w [out x in], d and h [in x in]; the result is float, [out x in].
/// Throws ptq::invalid_argument for mismatched shapes or bad options, ptq::non_finite_error for
/// NaN/Inf in w, d or h.
template <class DW, class DD, class DH>
RowMatrixXf gptaq_target(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DD>& d, const Eigen::MatrixBase<DH>& h,
                         const GptaqOptions& o = {}) {
    const char* fn = "gptaq_target";
    if (!(std::isfinite(o.alpha) && o.alpha >= 0.0)) detail::throw_invalid(fn, "options.alpha", "must be finite, >= 0");
    if (!(std::isfinite(o.percdamp) && o.percdamp >= 0.0))
        detail::throw_invalid(fn, "options.percdamp", "must be finite, >= 0");
    const Eigen::Index in = w.cols();
    if (h.rows() != in || h.cols() != in)
        detail::throw_invalid(fn, "h", "must be in x in with in = w.cols() = " + std::to_string(in));
    if (d.rows() != in || d.cols() != in)
        detail::throw_invalid(fn, "d", "must be in x in with in = w.cols() = " + std::to_string(in));
    Eigen::MatrixXd wd = w.template cast<double>();
    if (!detail::all_finite(wd)) detail::throw_non_finite(fn, "w", "weights");
    Eigen::MatrixXd hd = h.template cast<double>();
    if (!detail::all_finite(hd)) detail::throw_non_finite(fn, "h", "Hessian");
    const Eigen::MatrixXd dd = d.template cast<double>();
    if (!detail::all_finite(dd)) detail::throw_non_finite(fn, "d", "cross term");
    if (o.alpha == 0.0 || dd.isZero(0.0) || in == 0) return w.template cast<float>();
    for (Eigen::Index j = 0; j < in; ++j)
        if (hd(j, j) == 0.0) hd(j, j) = 1.0;
    double lambda = o.percdamp * hd.diagonal().mean();
    // (W D Hd^-1)^T = Hd^-1 (W D)^T (Hd symmetric).
    const Eigen::MatrixXd rhs = (wd * dd).transpose();
    for (int attempt = 0; attempt <= 12; ++attempt) {
        Eigen::MatrixXd a = hd;
        a.diagonal().array() += lambda;
        Eigen::LLT<Eigen::MatrixXd> llt(a);
        if (llt.info() == Eigen::Success) {
            const Eigen::MatrixXd c = llt.solve(rhs);
            if (detail::all_finite(c)) {
                wd += o.alpha * c.transpose();
                return wd.cast<float>();
            }
        }
        lambda = lambda > 0.0 ? lambda * 10.0 : 1e-8 * std::max(1.0, hd.diagonal().cwiseAbs().mean());
    }
    throw error("ptq::gptaq_target: H + lambda I is not positive definite after 12 damping increases");
}

}  // namespace ptq
