#pragma once
// Output-error metrics of a quantized linear layer: the layer-output loss through the Hessian
// (GPTQ's proxy) and the output error on calibration activations (AWQ, pipelines).
#include <Eigen/Core>

#include <ptq/detail/blas.hpp>
#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>

namespace ptq {

/// Layer-output loss tr((W - W^) H (W - W^)^T) in double (= 2/n ||X (W - W^)^T||^2 for
/// H = 2/n X^T X). Costs rows * in^2 flops.
template <class DW, class DQ, class DH>
double output_error_proxy(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DQ>& w_hat,
                          const Eigen::MatrixBase<DH>& h) {
    if (w.rows() != w_hat.rows() || w.cols() != w_hat.cols())
        detail::throw_invalid("output_error_proxy", "w_hat", "shape differs from w");
    if (h.rows() != w.cols() || h.cols() != w.cols())
        detail::throw_invalid("output_error_proxy", "h", "must be in_features x in_features");
    const Eigen::MatrixXd d = w.template cast<double>() - w_hat.template cast<double>();
    return (d * h.template cast<double>()).cwiseProduct(d).sum();
}

/// ||X delta^T||^2 for X [tokens x in] and an error matrix delta = W - W^ [out x in]: the float
/// product X delta^T (through detail::gemm: the CBLAS sgemm under PTQ_USE_BLAS, else Eigen, on
/// the calling thread), squared and summed in double. Costs tokens * in * out flops. Arguments
/// that are not row-major float matrices are evaluated into one first.
template <class DX, class DD>
double output_squared_error(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DD>& delta) {
    if (x.cols() != delta.cols()) detail::throw_invalid("output_squared_error", "delta", "columns differ from x's");
    const RowMatrixRef xr(x.derived()), dr(delta.derived());
    if (xr.rows() == 0 || dr.rows() == 0) return 0.0;
    // Row-major X [tokens x in] is column-major X^T [in x tokens]: C^T = delta X^T [out x tokens]
    // = (delta^T)^T X^T with delta^T the column-major view of the row-major delta.
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const Eigen::MatrixXf, 0, Stride> xt(xr.data(), xr.cols(), xr.rows(), Stride(xr.outerStride()));
    const Eigen::Map<const Eigen::MatrixXf, 0, Stride> dt(dr.data(), dr.cols(), dr.rows(), Stride(dr.outerStride()));
    Eigen::MatrixXf ct(dr.rows(), xr.rows());
    detail::gemm(ct, dt, true, xt, false, 1.0f, 0.0f);
    return ct.template cast<double>().squaredNorm();
}

/// Mean squared error of the layer output, ||X (W - W^)^T||^2 / (tokens * out) (0 for an
/// empty output).
template <class DX>
double output_mse(const Eigen::MatrixBase<DX>& x, const RowMatrixXf& w, const RowMatrixXf& w_hat) {
    if (w.rows() != w_hat.rows() || w.cols() != w_hat.cols())
        detail::throw_invalid("output_mse", "w_hat", "shape differs from w");
    const double n = double(x.rows()) * double(w.rows());
    return n == 0.0 ? 0.0 : output_squared_error(x, RowMatrixXf(w - w_hat)) / n;
}

}  // namespace ptq
