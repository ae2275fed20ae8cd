#pragma once
// Computational invariance (QuaRot / SliceGPT): fold RMSNorm weights into the linears that read
// them, and rotate the residual stream by an orthogonal Q fused into the weights.
#include <cstddef>
#include <initializer_list>
#include <string>

#include <Eigen/Core>

#include <ptq/detail/eigen.hpp>
#include <ptq/error.hpp>

namespace ptq {

// Convention (docs/DESIGN.md §13.1): activations are rows, [tokens x d]; a linear W [out x in]
// computes y = x W^T. The residual stream h is rotated to h' = h Q with Q orthogonal [d x d].
// RMSNorm(x) = x / sqrt(mean(x^2) + eps) * gamma commutes with Q once gamma is folded away
// (gamma = 1), because ||h Q|| = ||h||. Every product below is computed in double from the
// float operands and rounded once to float.

/// Folds an RMSNorm weight gamma [d] into the linears that read the norm's output:
/// W_k <- W_k diag(gamma) (each element rounded once), then gamma <- 1.
inline void fold_norm_weight(Eigen::Ref<Eigen::VectorXf> gamma, std::initializer_list<RowMatrixXf*> readers) {
    for (RowMatrixXf* w : readers) {
        if (w == nullptr) detail::throw_invalid("fold_norm_weight", "readers", "holds a null pointer");
        if (w->cols() != gamma.size())
            detail::throw_invalid("fold_norm_weight", "readers",
                                  "a linear has " + std::to_string(w->cols()) + " inputs, the norm " +
                                      std::to_string(gamma.size()));
    }
    if (!detail::all_finite(gamma)) detail::throw_non_finite("fold_norm_weight", "gamma", "norm weight");
    for (RowMatrixXf* w : readers) *w = w->array().rowwise() * gamma.transpose().array();
    gamma.setOnes();
}

namespace detail {
inline void check_rotation(const Eigen::MatrixXd& q, Eigen::Index d, const char* fn, const char* what) {
    if (q.rows() != q.cols() || q.rows() != d)
        throw_invalid(fn, "q",
                      "is " + std::to_string(q.rows()) + "x" + std::to_string(q.cols()) + ", " + what + " " +
                          std::to_string(d));
    if (!detail::all_finite(q)) throw_non_finite(fn, "q", "rotation");
}
}  // namespace detail

/// A matrix whose input (columns) lives in the rotated stream: a linear reading h' = h Q
/// (W <- W Q, so that h' W'^T = h W^T), or an embedding table whose rows are stream vectors
/// (E <- E Q). q: [cols x cols], orthogonal.
inline void rotate_input(Eigen::Ref<RowMatrixXf> w, const Eigen::MatrixXd& q) {
    detail::check_rotation(q, w.cols(), "rotate_input", "expected in_features");
    w = (w.cast<double>() * q).cast<float>();
}

/// A linear writing into the rotated stream (its output is added to h): W <- Q^T W, so that
/// x W'^T = (x W^T) Q. q: [rows x rows], orthogonal.
inline void rotate_output(Eigen::Ref<RowMatrixXf> w, const Eigen::MatrixXd& q) {
    detail::check_rotation(q, w.rows(), "rotate_output", "expected out_features");
    w = (q.transpose() * w.cast<double>()).cast<float>();
}

}  // namespace ptq
