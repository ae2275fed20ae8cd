#pragma once
// Output-error metrics of a quantized linear layer: the layer-output loss through the Hessian
// (GPTQ's proxy) and the output error on calibration activations (AWQ, pipelines).
#include <Eigen/Core>

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
/// product X delta^T, squared and summed in double. Costs tokens * in * out flops.
template <class DX, class DD>
double output_squared_error(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DD>& delta) {
    if (x.cols() != delta.cols()) detail::throw_invalid("output_squared_error", "delta", "columns differ from x's");
    return (x * delta.transpose()).template cast<double>().squaredNorm();
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
